"""crossmodal_jax: supervised cross-modal retrieval by learned similarity, in JAX/Flax.

The Python API (`crossmodal_jax.api`, docs/api.md):

- `get_config(spec, **overrides)`: the config of "METHOD,DATASET[,PRESET]";
- `train(config, workdir)`: train and evaluate, as `crossmodal-train`;
- `evaluate(workdir)`: evaluate a trained workdir, as `crossmodal-evaluate`;
- `load(workdir, checkpoint="best")`: the trained `Model` on raw inputs (`embed_images`,
  `embed_texts`, `score`, `rank`);
- `save_preprocessing(workdir)`: save an older workdir's preprocessing from its data.

The modules behind them: `training`, `evaluation`, `runs`, `data`, `methods`.
"""

__version__ = "0.1.0"

# pylint: disable=g-import-not-at-top,wrong-import-position
from crossmodal_jax.api import Model
from crossmodal_jax.api import evaluate
from crossmodal_jax.api import get_config
from crossmodal_jax.api import load
from crossmodal_jax.api import save_preprocessing
from crossmodal_jax.api import train

__all__ = ["get_config", "train", "evaluate", "load", "save_preprocessing", "Model"]
