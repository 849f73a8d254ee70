"""Training: one CycleGAN update (step.py), the objective around it (objective.py), the loop that
drives any objective (loop.py: Trainer), checkpoints (state.py), the run directory (rundir.py),
multi-process training and CUDA graphs (parallel/) and distillation (distill.py)."""
