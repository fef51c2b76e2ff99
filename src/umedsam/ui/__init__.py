"""umedsam.ui."""
