"""umedsam.inference."""
