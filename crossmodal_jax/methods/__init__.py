"""The methods, registered by name: the one list of what `config.method` may be.

Each method is one module here (a folder once it outgrows ~300 lines) holding its Flax
modules and its `base.Method` face, registered with `@registry.register("name")`; its
config file is `configs/<name>.py`. Importing this package imports every method module,
which registers it.
"""

from crossmodal_jax.methods import drsl
from crossmodal_jax.methods import hcmsl
from crossmodal_jax.methods import mcsm
from crossmodal_jax.methods import scanet
from crossmodal_jax.methods.registry import REGISTRY
from crossmodal_jax.methods.registry import get_method
from crossmodal_jax.methods.registry import names
from crossmodal_jax.methods.registry import register

__all__ = ["REGISTRY", "get_method", "names", "register", "drsl", "hcmsl", "mcsm", "scanet"]
