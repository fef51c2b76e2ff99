"""umedsam.losses."""
