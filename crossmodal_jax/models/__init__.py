"""Methods: Flax modules plus the common training / retrieval face (`base.Method`)."""

from __future__ import annotations

from crossmodal_jax.models import base
from crossmodal_jax.models import relation

# Method name in configs -> its `base.Method` class.
REGISTRY = {
    "drsl": relation.DRSLMethod,
    "drsl_code": relation.DRSLMethod,
}


def get_method(config, dims: dict[str, tuple[int, ...]], meta=None) -> base.Method:
  """Builds the method named by `config.method` for data with per-row shapes `dims`.

  `meta` is the dataset's metadata (e.g. a word-vector table for a text CNN).
  """
  try:
    cls = REGISTRY[config.method]
  except KeyError:
    raise ValueError(
        f"Unknown method {config.method!r}; choose one of {tuple(REGISTRY)}.") from None
  return cls(config.model, dims, meta)
