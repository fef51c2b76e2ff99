"""umedsam.data.readers."""
