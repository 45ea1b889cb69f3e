"""The run that calibrated the `builtin` descriptor's tau_c (`python -m diffmem.world.calibrate`).

It reproduces `diffmem.features.builtin.CALIBRATION` with the procedure of `diffmem.metrics.calibrate`,
on two domains of known-novel frames split by source: natural pictures (`natural_groups`) and frames of
the synthetic world (`make_world(size="small", seed=1)`). It lives with the world because it builds one;
the library layers only read the stored result.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from ..features.builtin import BuiltinDescriptor
from ..io.results import write_json
from ..io.video import read_frames
from ..metrics.calibrate import calibrate_threshold, edit_recall, natural_groups
from .build import load_ground_truth, make_world


def world_groups(seed: int = 1, size: str = "small", per_clip: int = 4) -> list[tuple[str, list[np.ndarray]]]:
    """(source, frames): `per_clip` evenly spaced frames of one item of every source of a synthetic world."""
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
        write_json(args.out, res)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
