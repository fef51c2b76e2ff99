"""umedsam.models."""
