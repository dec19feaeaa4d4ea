"""Training: partitioning, optimizers, state, the step, checkpoints, the loop."""
