"""Calibrating tau_c for a descriptor on known-novel frames, and the run that calibrated `builtin`.

Procedure (any descriptor, `calibrate_threshold`): a *reference* set of frames plays the training set;
*novel* frames, none of which shows the content of any reference frame, play generated frames. For each
novel frame g, s(g) = max over reference frames x of <f(g), f(x)>, exactly the audit's frame score.
tau_c is the (1 - fpr) quantile of s(g): at tau_c a fraction `fpr` of novel frames would be flagged
against a reference set of this size (a frame-level false-positive rate; a larger training set has
more chances to find a look-alike, so calibrate against a set of the size you audit against when
you can). The pair-level false-positive rate at tau_c is reported too.

`python -m diffmem.world.calibrate` reproduces the numbers stored in
`diffmem.features.builtin.CALIBRATION`: known-novel frames from two domains, split by source so no
content is on both sides:

- natural: 64 x 64 windows of the scikit-image sample images (each image whole on one side) and the
  LFW faces bundled with scikit-image (aligned faces: the hardest near-misses);
- world: frames of the synthetic world (`make_world(size="small", seed=1)`), split by source, so the
  novel side shares sprites, backgrounds and motions with the reference side but no clip.

tau_c is the 99th percentile of s(g) over both domains together; the per-domain quantiles and the recall
of every edit in `diffmem.features.edits` (copies of reference frames, found above tau_c with the
right source) are printed and stored with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from ..features.base import Descriptor
from ..features.edits import EDITS, apply_edit
from .content import nearest_training_frames


@dataclass
class Calibration:
    threshold: float
    fpr: float
    n_reference: int
    n_novel: int
    pair_fpr: float
    novel_quantiles: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate_threshold(reference: np.ndarray, novel: np.ndarray, fpr: float = 0.01) -> Calibration:
    """tau_c from descriptors of reference frames (N,D) and known-novel frames (M,D); see the module doc."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    s, _ = nearest_training_frames(novel, reference)
    tau = float(np.quantile(s, 1 - fpr))
    # pair-level rate from a bounded sample of pairs (memory)
    m = min(len(novel), 2000)
    pairs = novel[:m] @ reference[:min(len(reference), 5000)].T
    q = {str(p): float(np.quantile(s, p)) for p in (0.5, 0.9, 0.95, 0.99, 0.999)}
    q["max"] = float(s.max())
    return Calibration(tau, fpr, len(reference), len(novel), float((pairs > tau).mean()), q)


def edit_recall(descriptor: Descriptor, reference_frames: np.ndarray, reference_groups: np.ndarray,
                reference_desc: np.ndarray, threshold: float, n: int = 200, seed: int = 0) -> dict:
    """Fraction of edited copies of reference frames whose best match is above `threshold` and in the
    right group (same source), per edit."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(reference_frames), min(n, len(reference_frames)), replace=False)
    out = {}
    for name in EDITS:
        q = np.stack([apply_edit(name, reference_frames[i], seed=int(i)) for i in idx])
        s, a = nearest_training_frames(descriptor.encode(q), reference_desc)
        out[name] = float(((s > threshold) & (reference_groups[a] == reference_groups[idx])).mean())
    return out


# ------------------------------------------------------------------ the builtin calibration corpus

_SKIMAGE = ("astronaut", "brick", "camera", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
            "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
            "microaneurysms", "moon", "page", "retina", "rocket", "text", "shepp_logan_phantom", "horse",
            "binary_blobs")


def _rgb_uint8(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.uint8) * 255
    elif x.dtype != np.uint8:
        x = np.clip(x * 255 if x.max() <= 1.0 else x, 0, 255).astype(np.uint8)
    if x.ndim == 2:
        x = np.stack([x] * 3, -1)
    return np.ascontiguousarray(x[..., :3])


def natural_groups(seed: int = 0, windows: int = 12, size: int = 64) -> list[tuple[str, list[np.ndarray]]]:
    """(group, frames): windows of each bundled scikit-image picture (one group per picture) and LFW faces
    (two per group)."""
    import skimage.data as skd  # slow to import (lazy loader); only this calibration run needs it

    rng = np.random.default_rng(seed)
    groups = []
    for name in _SKIMAGE:
        im = _rgb_uint8(getattr(skd, name)())
        h, w = im.shape[:2]
        frames = []
        for _ in range(windows):
            s = int(min(h, w) * rng.uniform(0.3, 0.7))
            t, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            frames.append(cv2.resize(im[t:t + s, left:left + s], (size, size), interpolation=cv2.INTER_AREA))
        groups.append((f"skimage:{name}", frames))
    faces = (skd.lfw_subset()[:100] * 255).astype(np.uint8)  # the first 100 are faces
    for i in range(0, 100, 2):
        groups.append((f"lfw:{i}", [cv2.resize(_rgb_uint8(f), (size, size), interpolation=cv2.INTER_LINEAR)
                                    for f in faces[i:i + 2]]))
    return groups
