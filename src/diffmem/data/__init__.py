"""Manifests (what a set of items is) and the synthetic embedded world."""
