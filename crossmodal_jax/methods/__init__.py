"""The methods, registered by name: the one list of what `config.method` may be.

Each method is a module or a folder here holding its Flax modules and its `base.Method`
face, registered with `@registry.register("name")`; its config file is
`configs/<name>.py`. Importing this package imports every module and folder beside this
file (but `base` and `registry`), which registers each method: adding one is its folder
(or module) and its config file, and no edit anywhere else.
"""

import importlib
import pkgutil

from crossmodal_jax.methods.registry import REGISTRY
from crossmodal_jax.methods.registry import get_method
from crossmodal_jax.methods.registry import names
from crossmodal_jax.methods.registry import register

__all__ = ["REGISTRY", "get_method", "names", "register"]

for _found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if _found.name not in ("base", "registry"):
    importlib.import_module(f"{__name__}.{_found.name}")
