"""The edits that memorized generations show, as named functions on uint8 frames.

Used to calibrate and test descriptors (a copy edited by any of these must still be found) and by the
planted-copy tests. Every edit maps uint8 (H,W,3) -> uint8 (H,W,3) of the same size, so a copy can
stand in for its original in a clip; strengths are relative to the frame size, so they mean the
same at 64 px and at 512 px. `rng` makes the random ones reproducible.
"""
from __future__ import annotations

import io
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from ..io.video import resize_frames


def _clip(x) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gauss_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def colour(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Per-channel gains and a small hue rotation (mixing channels): a colour cast."""
    rng = np.random.default_rng(rng)
    gains = 1 + strength * rng.uniform(-0.2, 0.2, size=3)
    a = np.deg2rad(strength * rng.uniform(-25, 25))
    # rotate chroma about the grey axis (Rodrigues on axis (1,1,1)/sqrt3)
    k = np.ones(3) / np.sqrt(3)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    R = np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K
    return _clip((im.astype(np.float32) @ R.T) * gains)


def brightness(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Brightness offset and contrast change."""
    rng = np.random.default_rng(rng)
    off = strength * rng.choice([-1, 1]) * rng.uniform(20, 40)
    gain = 1 + strength * rng.uniform(-0.25, 0.15)
    x = im.astype(np.float32)
    return _clip((x - x.mean()) * gain + x.mean() + off)


def blur(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Gaussian blur, sigma = 1.5 % of the shorter side (1 px at 64 px)."""
    sigma = max(0.3, strength * 0.015 * min(im.shape[:2]))
    return cv2.GaussianBlur(im, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def noise(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Additive Gaussian noise, std 12/255."""
    rng = np.random.default_rng(rng)
    return _clip(im.astype(np.float32) + rng.normal(0, 12 * strength, size=im.shape))


def jpeg(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """JPEG compression at quality 25 (strength 1)."""
    q = int(np.clip(round(100 - 75 * strength), 5, 95))
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def crop(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Keep a random 88-94 % window (each side) and scale it back to the original size."""
    rng = np.random.default_rng(rng)
    h, w = im.shape[:2]
    f = 1 - strength * rng.uniform(0.06, 0.12)
    ch, cw = max(2, round(h * f)), max(2, round(w * f))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return resize_frames(im[top:top + ch, left:left + cw], (h, w))


def shift(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Translate by 4-6 % of the size in x and y; the uncovered border repeats the edge."""
    rng = np.random.default_rng(rng)
    h, w = im.shape[:2]
    dy = strength * rng.choice([-1, 1]) * rng.uniform(0.04, 0.06) * h
    dx = strength * rng.choice([-1, 1]) * rng.uniform(0.04, 0.06) * w
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(im, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def rescale(im: np.ndarray, rng=None, strength: float = 1.0) -> np.ndarray:
    """Down to 50 % and back up: the detail a lower-resolution model would lose."""
    h, w = im.shape[:2]
    f = 1 - 0.5 * strength
    return resize_frames(resize_frames(im, (max(2, round(h * f)), max(2, round(w * f)))), (h, w))


EDITS: dict[str, Callable[..., np.ndarray]] = {
    "colour": colour, "brightness": brightness, "blur": blur, "noise": noise,
    "jpeg": jpeg, "crop": crop, "shift": shift, "resize": rescale,
}


def apply_edit(name: str, frames: np.ndarray, seed: int = 0, strength: float = 1.0) -> np.ndarray:
    """Apply edit `name` to one frame (H,W,3) or to every frame of a clip (T,H,W,3) with the same draw,
    as a copied clip would be edited consistently."""
    fn = EDITS[name]
    if frames.ndim == 3:
        return fn(frames, np.random.default_rng(seed), strength)
    # geometry and colour are drawn once per clip; noise is fresh in every frame
    per_frame = name == "noise"
    return np.stack([fn(f, np.random.default_rng([seed, i] if per_frame else seed), strength)
                     for i, f in enumerate(frames)])
