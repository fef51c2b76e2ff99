"""umedsam.models.encoders."""
