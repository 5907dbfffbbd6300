"""Model weights trained by scripts/ and model recipes."""
