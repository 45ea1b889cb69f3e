"""diffmem: measure, detect and prevent training-data memorization in diffusion models."""

__version__ = "0.1.0"
