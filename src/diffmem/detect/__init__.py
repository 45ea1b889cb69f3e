"""Inference-time memorization detectors (content and motion magnitude) and their evaluation."""
