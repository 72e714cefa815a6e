"""Training and evaluation: the trainer, DDP, metrics, plots and run folders."""
