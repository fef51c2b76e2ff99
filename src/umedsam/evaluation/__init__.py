"""umedsam.evaluation."""
