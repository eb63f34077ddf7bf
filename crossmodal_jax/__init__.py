"""crossmodal_jax: supervised cross-modal retrieval by learned similarity, in JAX/Flax."""

__version__ = "0.1.0"
