"""umedsam.data."""
