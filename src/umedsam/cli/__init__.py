"""umedsam.cli."""
