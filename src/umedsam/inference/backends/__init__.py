"""umedsam.inference.backends."""
