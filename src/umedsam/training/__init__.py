"""umedsam.training."""
