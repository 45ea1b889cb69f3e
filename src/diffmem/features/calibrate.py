"""Calibrating tau_c for a descriptor on known-novel frames, and the run that calibrated `builtin`.

Procedure (any descriptor, `calibrate_threshold`): a *reference* set of frames plays the training set;
*novel* frames, none of which shows the content of any reference frame, play generated frames. For each
novel frame g, s(g) = max over reference frames x of <f(g), f(x)>, exactly the audit's frame score.
tau_c is the (1 - fpr) quantile of s(g): at tau_c a fraction `fpr` of novel frames would be flagged
against a reference set of this size (a frame-level false-positive rate; a larger training set has
more chances to find a look-alike, so calibrate against a set of the size you audit against when
you can). The pair-level false-positive rate at tau_c is reported too.

`python -m diffmem.features.calibrate` reproduces the numbers stored in
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

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .base import Descriptor
from .edits import EDITS, apply_edit


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


def max_similarity(queries: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: max dot product with any reference row, and its argmax (chunked matmul)."""
    best = np.full(len(queries), -np.inf, np.float32)
    arg = np.zeros(len(queries), np.int64)
    for i in range(0, len(reference), chunk):
        s = queries @ reference[i:i + chunk].T
        j = s.argmax(1)
        v = s[np.arange(len(queries)), j]
        better = v > best
        best[better], arg[better] = v[better], j[better] + i
    return best, arg


def calibrate_threshold(reference: np.ndarray, novel: np.ndarray, fpr: float = 0.01) -> Calibration:
    """tau_c from descriptors of reference frames (N,D) and known-novel frames (M,D); see the module doc."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr}")
    s, _ = max_similarity(novel, reference)
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
        s, a = max_similarity(descriptor.encode(q), reference_desc)
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
    import cv2
    import skimage.data as skd

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


def world_groups(seed: int = 1, size: str = "small", per_clip: int = 4) -> list[tuple[str, list[np.ndarray]]]:
    """(source, frames): `per_clip` evenly spaced frames of one item of every source of a synthetic world."""
    from ..data.world import make_world, load_ground_truth
    from ..io.video import read_frames

    with tempfile.TemporaryDirectory() as tmp:
        make_world(tmp, seed=seed, size=size)
        gt = load_ground_truth(tmp)
        first = {}
        for it in gt["items"]:
            first.setdefault(it["source"], it)
        groups = []
        for src, it in first.items():
            f = read_frames(Path(tmp) / it["path"]).array
            idx = np.unique(np.linspace(0, len(f) - 1, per_clip).round().astype(int))
            groups.append((f"world:{src}", [f[i] for i in idx]))
    return groups


def _split(groups, rng):
    perm = rng.permutation(len(groups))
    half = len(groups) // 2
    ref = [(gi, f) for gi in perm[:half] for f in groups[gi][1]]
    nov = [f for gi in perm[half:] for f in groups[gi][1]]
    return (np.stack([f for _, f in ref]), np.array([gi for gi, _ in ref]), np.stack(nov))


def calibrate_builtin(seed: int = 0, fpr: float = 0.01, progress: bool = True) -> dict:
    """The run behind `builtin.CALIBRATION` (see the module doc); returns everything it measured."""
    from .builtin import BuiltinDescriptor

    desc = BuiltinDescriptor()
    rng = np.random.default_rng(seed)
    domains = {"natural": natural_groups(seed), "world": world_groups(seed + 1)}
    refs, novs, per_domain = [], [], {}
    for name, groups in domains.items():
        ref_f, ref_g, nov_f = _split(groups, rng)
        ref_d, nov_d = desc.encode(ref_f), desc.encode(nov_f)
        cal = calibrate_threshold(ref_d, nov_d, fpr)
        per_domain[name] = {"calibration": cal.as_dict(), "ref": (ref_f, ref_g + 10_000 * len(refs), ref_d)}
        refs.append(per_domain[name]["ref"])
        novs.append(nov_d)
        if progress:
            print(f"{name}: {len(ref_f)} reference frames, {len(nov_f)} novel; "
                  f"own {1 - fpr:.0%} quantile {cal.threshold:.4f}", flush=True)
    ref_d = np.concatenate([r[2] for r in refs])
    cal = calibrate_threshold(ref_d, np.concatenate(novs), fpr)
    tau = round(cal.threshold, 3)
    result = {"threshold": tau, "fpr_target": fpr, "policy_fingerprint": desc.fingerprint,
              "pooled": cal.as_dict(), "domains": {}}
    for name, d in per_domain.items():
        ref_f, ref_g, ref_dd = d["ref"]
        rec = edit_recall(desc, ref_f, ref_g, ref_dd, tau, seed=seed)
        nov_s = d["calibration"]
        result["domains"][name] = {**nov_s, "edit_recall_at_threshold": rec}
        if progress:
            print(f"{name}: recall at tau_c={tau}: " + ", ".join(f"{k} {v:.3f}" for k, v in rec.items()), flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Re-run the calibration of the builtin descriptor's tau_c.")
    ap.add_argument("--fpr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = ap.parse_args(argv)
    res = calibrate_builtin(args.seed, args.fpr)
    print(json.dumps({k: v for k, v in res.items() if k != "domains"}, indent=2))
    if args.out:
        from ..io.results import write_json

        write_json(args.out, res)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
