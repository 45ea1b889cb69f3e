"""Colour-coded flow: hue = direction, saturation = magnitude (white = no motion).

The HSV colour wheel: a flow pointing right is red (hue 0), down (on screen) yellow-green
(hue 90), left cyan (180), up violet (270); the colour fades to white as the motion goes to
zero and is fully saturated at `max_magnitude` and above. One `max_magnitude` for a whole video
keeps colours comparable across its frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..io.video import WRITE_EXTENSIONS, read_frames, write_video
from . import FlowPolicy, to_common_resolution, video_flow


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0, 1]; h is a fraction of a turn. Returns float (..., 3)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # The six sextants of the hexcone, (r, g, b) for each.
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,), np.float64)
    for k, (r, g, b) in enumerate(choices):
        sel = i == k
        rgb[sel, 0], rgb[sel, 1], rgb[sel, 2] = r[sel], g[sel], b[sel]
    return rgb


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """float (..., H, W, 2) flow -> uint8 (..., H, W, 3) colour image(s).

    max_magnitude: the magnitude that saturates; default the 99th percentile of `flow`'s magnitudes
    (all frames together: comparable colours, and a few outlier pixels do not wash the rest out).
    """
    flow = np.asarray(flow, np.float64)
    u, v = flow[..., 0], flow[..., 1]
    mag = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(np.percentile(mag, 99)) if mag.size else 0.0
    sat = np.clip(mag / max_magnitude, 0.0, 1.0) if max_magnitude > 0 else np.zeros_like(mag)
    hue = np.mod(np.arctan2(v, u), 2 * np.pi) / (2 * np.pi)
    rgb = hsv_to_rgb(hue, sat, np.ones_like(mag))
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def colour_wheel(size: int = 64) -> np.ndarray:
    """uint8 (size, size, 3) legend: the colour of a flow pointing from the centre to each pixel."""
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([xs - c, ys - c], -1)
    out = flow_to_rgb(flow, max_magnitude=c)
    out[np.hypot(xs - c, ys - c) > c] = 255
    return out


def write_flow_video(video: str | Path, out: str | Path, *, backend: str = "dis", short_side: int | None = 128,
                     fps: float | None = None, max_magnitude: float | None = None, side_by_side: bool = True,
                     max_frames: int | None = None) -> dict:
    """Read `video`, estimate its flow, write the colour-coded flow to `out` (.mp4 / .gif / ...).

    max_frames: use only the first `max_frames` sampled frames.

    side_by_side: each output frame is [video frame | flow colours]. max_magnitude: saturating
    magnitude (default: the 99th percentile over the video). Returns a summary dict (flows, size,
    largest magnitude and saturating magnitude in px/frame at the common resolution).
    """
    out = Path(out)
    if out.suffix.lower() not in WRITE_EXTENSIONS:
        raise BadInputError(out, f"output must end in one of {', '.join(sorted(WRITE_EXTENSIONS))}")
    frames = read_frames(video, fps=fps)
    arr = frames.array[:max_frames] if max_frames else frames.array
    if len(arr) < 2:
        raise BadInputError(video, f"needs at least 2 frames for optical flow, has {len(arr)}")
    policy = FlowPolicy(backend=backend, short_side=short_side)
    flows = video_flow(arr, policy)
    mags = np.hypot(flows[..., 0], flows[..., 1])
    mag, sat = float(mags.max()), float(np.percentile(mags, 99))
    sat = max_magnitude if max_magnitude is not None else sat
    colours = flow_to_rgb(flows, sat)
    if side_by_side:
        colours = np.concatenate([to_common_resolution(arr[:-1], short_side), colours], axis=2)
    ts = np.asarray(frames.timestamps, float)[: len(arr)]
    rate = fps or (float(1.0 / np.median(np.diff(ts))) if len(ts) > 1 and np.all(np.diff(ts) > 0) else 8.0)
    write_video(out, colours, fps=rate)
    return {"video": str(video), "out": str(out), "flows": int(len(flows)), "size": list(colours.shape[1:3]),
            "fps": rate, "backend": backend, "max_magnitude_px": mag,
            "saturation_px": sat}
