"""Inference-time memorization detectors (content and motion magnitude) and their evaluation.

- `magnitude`: `content_magnitude`, `motion_magnitude`, `total_magnitude`, `wen_magnitude`, `magnitudes` (functional) and
  `MagnitudeDetector` (update/compute, and a sampler hook that stops after the first s steps);
- `calibrate`: `DetectConfig`, `Calibration` (thresholds for a false-positive rate, saved as JSON), `calibrate`;
- `evaluate`: `roc_auc`, `tpr_at_fpr`, `threshold_at_fpr`, `roc_curve`, `roc_curves`, `evaluate_scores`;
- `prompts`: `prompt_scores` (the functional twin of `diffmem detect`) and `PromptDetector` (its update/compute form,
  every detector at once), `magnitude_function`, the per-prompt cache;
- `guard`: `MemorizationGuard`, the generation-time switch (a sampler hook; AMG's trigger).
"""
from .calibrate import Calibration, DetectConfig, calibrate
from .evaluate import evaluate_scores, roc_auc, roc_curve, roc_curves, threshold_at_fpr, tpr_at_fpr
from .guard import MemorizationGuard
from .magnitude import (MagnitudeDetector, content_magnitude, magnitudes, motion_magnitude, total_magnitude,
                        wen_magnitude)
from .prompts import PromptDetector, magnitude_function, prompt_scores

__all__ = [
    "content_magnitude", "motion_magnitude", "total_magnitude", "wen_magnitude", "magnitudes", "MagnitudeDetector",
    "DetectConfig", "Calibration", "calibrate", "roc_auc", "roc_curve", "roc_curves", "tpr_at_fpr",
    "threshold_at_fpr", "evaluate_scores", "MemorizationGuard", "prompt_scores", "PromptDetector", "magnitude_function",
]
