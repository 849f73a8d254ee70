"""Training: one CycleGAN update (step.py), the loop around it (trainer.py), pool and schedule."""
