"""miniend-jax: task-agnostic distillation of T5 encoder-decoder models in JAX/Flax."""

__version__ = "0.1.0"
