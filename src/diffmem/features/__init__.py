"""Copy-detection descriptors and their named preprocessing policies."""
