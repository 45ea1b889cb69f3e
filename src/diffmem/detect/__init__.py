"""Inference-time memorization detectors (content and motion magnitude) and their evaluation.

- `magnitude`: `content_magnitude`, `motion_magnitude`, `total_magnitude`, `magnitudes` (functional) and
  `MagnitudeDetector` (update/compute, and a sampler hook that stops after the first s steps);
- `calibrate`: `DetectSettings`, `Calibration` (thresholds for a false-positive rate, saved as JSON), `calibrate`;
- `evaluate`: `roc_auc`, `tpr_at_fpr`, `threshold_at_fpr`, `roc_curve`, `evaluate_scores`, `roc_figure`;
- `guard`: `MemorizationGuard`, the generation-time switch (a sampler hook; AMG's trigger).
"""
from .calibrate import Calibration, DetectSettings, calibrate
from .evaluate import evaluate_scores, roc_auc, roc_curve, threshold_at_fpr, tpr_at_fpr
from .guard import MemorizationGuard
from .magnitude import (MagnitudeDetector, content_magnitude, magnitudes, motion_magnitude, total_magnitude)

__all__ = [
    "content_magnitude", "motion_magnitude", "total_magnitude", "magnitudes", "MagnitudeDetector",
    "DetectSettings", "Calibration", "calibrate", "roc_auc", "roc_curve", "tpr_at_fpr", "threshold_at_fpr",
    "evaluate_scores", "MemorizationGuard",
]
