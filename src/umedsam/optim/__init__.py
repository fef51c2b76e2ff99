"""umedsam.optim."""
