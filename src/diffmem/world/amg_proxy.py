"""How well AMG's differentiable motion proxy tracks OFS-k, measured on rendered world clips
(`python benchmarks/bench_amg.py --proxy`; README, "The motion proxy")."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from ..features.motion import MotionPolicy, describe_motion
from ..guidance.similarity import MotionProxyPolicy, motion_proxy, proxy_windows
from ..metrics.motion import ofs_k_windows
from .clips import BACKGROUNDS, DIRECTIONS, MOTIONS, SPRITES, ClipSpec, render_clip


def proxy_agreement(n_per_motion: int = 2, *, size: int = 32, n_frames: int = 8, fps: float = 4.0, seed: int = 0,
                    proxy: MotionProxyPolicy | None = None) -> dict:
    """How well the differentiable motion proxy tracks OFS-k, on rendered world clips.

    Renders clips of every world motion (random sprite, background, instance, texture offset), then
    for every ordered pair (G, X) of distinct clips compares OFS-k(G, X) from DIS flow (the motion
    metric) with the proxy's OFS-k, both proxy-vs-DIS-windows (what AMG's sigma_t computes: generated
    side by the proxy, training side from the motion index) and proxy-vs-proxy. Returns Pearson and
    Spearman correlations, the per-flow cosine of the pooled fields, and the counts.
    """
    proxy = proxy or MotionProxyPolicy()
    rng = np.random.default_rng(seed)
    policy = MotionPolicy(fps=fps)
    clips = []
    for m in MOTIONS:
        for j in range(n_per_motion):
            d = DIRECTIONS[m][j % len(DIRECTIONS[m])]
            spec = ClipSpec.make(SPRITES[rng.integers(len(SPRITES))], BACKGROUNDS[rng.integers(len(BACKGROUNDS))], m, d,
                                 n_frames=n_frames, size=size, fps=fps, sprite_instance=int(rng.integers(5)),
                                 bg_x=float(rng.random()), bg_y=float(rng.random()))
            clips.append((f"{m}-{d}-{j}", render_clip(spec)))
    dis = [describe_motion(c, policy) for _, c in clips]
    prox, cos = [], []
    for (_, c), vm in zip(clips, dis):
        with torch.no_grad():
            pooled = motion_proxy(torch.as_tensor(c).float().div(255.0)[None], proxy)
        w, _ = proxy_windows(pooled, proxy.k)
        prox.append(w[0].numpy())
        a, b = pooled[0].reshape(len(vm.pooled), -1).numpy(), vm.pooled.reshape(len(vm.pooled), -1)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        ok = (na > 1e-6) & (nb > 1e-6)
        if ok.any():
            cos.append(float(((a[ok] * b[ok]).sum(1) / (na[ok] * nb[ok])).mean()))
    ref, pd_, pp = [], [], []
    for i in range(len(clips)):
        for j in range(len(clips)):
            if i == j or not len(dis[i].windows) or not len(dis[j].windows):
                continue
            ref.append(ofs_k_windows(dis[i].windows, dis[j].windows).score)
            pd_.append(ofs_k_windows(prox[i], dis[j].windows).score)
            pp.append(ofs_k_windows(prox[i], prox[j]).score)
    return {"clips": len(clips), "pairs": len(ref), "size": size, "n_frames": n_frames, "fps": fps,
            "proxy": proxy.as_dict(),
            "pearson_proxy_vs_dis": float(pearsonr(ref, pd_)[0]), "spearman_proxy_vs_dis": float(spearmanr(ref, pd_)[0]),
            "pearson_proxy_vs_proxy": float(pearsonr(ref, pp)[0]),
            "spearman_proxy_vs_proxy": float(spearmanr(ref, pp)[0]),
            "mean_flow_cosine": float(np.mean(cos)) if cos else None}
