"""Sprites and background textures of the embedded world, cut from imagery bundled in pip packages.

Sources (all ship inside the wheels, nothing is downloaded):
- scikit-image sample images: chelsea (cat), coffee (cup), rocket, astronaut, coins, colorwheel,
  brick, grass, gravel, moon (craters), hubble_deep_field (stars), immunohistochemistry (cells);
- scikit-image's LFW subset: its first 100 images are faces (the other 100 are not);
- scikit-learn's digits (1797 handwritten 8x8 digits).

A sprite is an RGB patch with a soft alpha mask, long side `SPRITE_RES` pixels, values in [0, 1].
A texture is a square RGB float image; frames are windows cut out of it.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

SPRITE_RES = 64  # long side of every sprite patch; the renderer scales it to the wanted size

# noun used in captions for each sprite kind (the kind name is the noun)
SPRITES = ("face", "digit", "cat", "cup", "rocket", "astronaut", "coin", "wheel")
BACKGROUNDS = ("bricks", "grass", "gravel", "craters", "stars", "cells")

# Object crops: (skimage image, box x0, y0, x1, y1 in source pixels). Chosen by eye on the images.
_OBJECT_BOXES = {
    "cat": ("chelsea", 40, 0, 410, 300),
    "cup": ("coffee", 80, 10, 480, 390),
    "rocket": ("rocket", 270, 115, 370, 415),
    "astronaut": ("astronaut", 100, 0, 380, 330),
    "wheel": ("colorwheel", 0, 0, 370, 370),
}
_N_OBJECT_VARIANTS = 8  # object crops get small jitter/flip variants so "another cat" exists
_N_FACES = 100  # lfw_subset(): faces first, then 100 non-faces

# Grey textures are tinted so that the backgrounds differ in colour as well as in pattern.
_TEXTURES = {
    "bricks": ("brick", (1.0, 0.62, 0.48)),
    "grass": ("grass", (0.62, 0.95, 0.45)),
    "gravel": ("gravel", (0.92, 0.86, 0.74)),
    "craters": ("moon", (0.85, 0.85, 0.92)),
    "stars": ("hubble_deep_field", None),
    "cells": ("immunohistochemistry", None),
}
_TEXTURE_CONTRAST = 0.7  # textures are softened a little so sprites stand out of them
# "balanced" textures (version-2 worlds): every background has the same mean colour and the same RMS
# contrast, so a caption's background word does not set the frame's mean colour. Measured on the large
# world's first model: the backgrounds' mean colours (stars 0.08 ... cells 0.63) explained 81 % of the
# variance of the first-step text-conditional difference that memorization detectors measure.
TEXTURE_STYLES = ("tinted", "balanced")
_BALANCED_MEAN = 0.42
_BALANCED_RMS = 0.06


@dataclass(frozen=True)
class Sprite:
    """RGB patch (h, w, 3) and alpha (h, w), float32 in [0, 1]."""

    rgb: np.ndarray
    alpha: np.ndarray


def n_instances(kind: str) -> int:
    """How many distinct instances of a sprite kind exist (different faces, digits, coins, crops)."""
    if kind == "face":
        return _N_FACES
    if kind == "digit":
        return len(_digits())
    if kind == "coin":
        return len(_coin_boxes())
    if kind in _OBJECT_BOXES:
        return _N_OBJECT_VARIANTS
    raise ValueError(f"unknown sprite kind {kind!r}; known: {', '.join(SPRITES)}")


@lru_cache(maxsize=None)
def _skimage(name: str) -> np.ndarray:
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)())
    img.flags.writeable = False  # cached and shared
    return img


def _ellipse_alpha(h: int, w: int, feather: float = 0.1) -> np.ndarray:
    """Soft ellipse inscribed in an h x w box: 1 inside, falling to 0 over `feather` of the radius."""
    yy = (np.arange(h) + 0.5) / h * 2 - 1
    xx = (np.arange(w) + 0.5) / w * 2 - 1
    r = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return np.clip((1.0 - r) / feather, 0.0, 1.0).astype(np.float32)


def _to_res(img: np.ndarray) -> np.ndarray:
    """Resize so the long side is SPRITE_RES (area filter down, cubic up)."""
    h, w = img.shape[:2]
    s = SPRITE_RES / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(img, size, interpolation=interp), 0.0, 1.0)


def _rgb01(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    else:
        img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    import skimage.data

    return np.asarray(skimage.data.lfw_subset()[:_N_FACES], dtype=np.float32)


@lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    # Read the CSV that scikit-learn bundles directly: importing sklearn takes seconds (scipy), and
    # load_digits() reads this same file (64 pixel values 0..16, then the label, per row).
    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if os.path.exists(path):
        images = np.loadtxt(path, delimiter=",")[:, :64].reshape(-1, 8, 8)
    else:  # pragma: no cover - another layout of the package
        from sklearn.datasets import load_digits

        images = load_digits().images
    return np.asarray(images, dtype=np.float32) / 16.0


@lru_cache(maxsize=1)
def _coin_boxes() -> tuple[tuple[int, int, int, int], ...]:
    """Bounding boxes of the coins in skimage's coins image, found by thresholding; sorted row-major."""
    img = _skimage("coins")
    _, mask = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = []
    for x0, y0, w, h, area in stats[1:]:
        if 0.7 < h / w < 1.4 and min(h, w) > 25 and area > 400:
            m = 3
            boxes.append((max(0, int(x0) - m), max(0, int(y0) - m),
                          min(img.shape[1], int(x0 + w) + m), min(img.shape[0], int(y0 + h) + m)))
    boxes.sort(key=lambda b: (round(b[1] / 60), b[0]))
    return tuple(boxes)


@lru_cache(maxsize=256)
def load_sprite(kind: str, instance: int = 0) -> Sprite:
    """The sprite `instance` (taken modulo n_instances) of a kind; cached, do not modify the arrays."""
    instance = int(instance) % n_instances(kind)
    if kind == "face":
        rgb = _to_res(_rgb01(_faces()[instance]))
        alpha = _ellipse_alpha(*rgb.shape[:2], feather=0.15)
    elif kind == "digit":
        d = _digits()[instance]
        a = _to_res(np.repeat(d[..., None], 3, axis=2))[..., 0]
        alpha = np.clip(a * 1.5, 0.0, 1.0).astype(np.float32)  # strokes opaque, edges soft
        rgb = np.empty(alpha.shape + (3,), np.float32)
        rgb[:] = (1.0, 0.95, 0.55)  # a pale yellow digit reads on every texture
    elif kind == "coin":
        x0, y0, x1, y1 = _coin_boxes()[instance]
        rgb = _to_res(_rgb01(_skimage("coins")[y0:y1, x0:x1]))
        alpha = _ellipse_alpha(*rgb.shape[:2], feather=0.08)
    else:
        src, x0, y0, x1, y1 = _OBJECT_BOXES[kind]
        img = _rgb01(_skimage(src))
        if instance:  # variants: the box shifted by up to 6 % and mirrored on odd instances
            rng = np.random.default_rng(1000 + instance)
            w, h = x1 - x0, y1 - y0
            dx, dy = (rng.uniform(-0.06, 0.06, 2) * (w, h)).round().astype(int)
            x0, x1 = np.clip([x0 + dx, x1 + dx], 0, img.shape[1])
            y0, y1 = np.clip([y0 + dy, y1 + dy], 0, img.shape[0])
        rgb = _to_res(img[y0:y1, x0:x1])
        if instance % 2:
            rgb = rgb[:, ::-1]
        alpha = _ellipse_alpha(*rgb.shape[:2], feather=0.08)
    return Sprite(np.ascontiguousarray(rgb, dtype=np.float32), np.ascontiguousarray(alpha, dtype=np.float32))


@lru_cache(maxsize=32)
def load_texture(name: str, side: int, style: str = "tinted") -> np.ndarray:
    """Square background texture (side, side, 3) float32 in [0, 1]; cached, do not modify.

    style: "tinted" (version-1 worlds: grey textures tinted, each its own mean colour) or "balanced" (the
    same, shifted to one mean colour per channel and scaled to one RMS contrast; the tint stays in the
    texture's variation)."""
    if style not in TEXTURE_STYLES:
        raise ValueError(f"unknown texture style {style!r}; known: {', '.join(TEXTURE_STYLES)}")
    if style == "balanced":
        img = load_texture(name, side)
        dev = img - img.mean(axis=(0, 1), keepdims=True)
        img = _BALANCED_MEAN + dev * (_BALANCED_RMS / max(float(dev.std()), 1e-6))
        return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
    if name not in _TEXTURES:
        raise ValueError(f"unknown background {name!r}; known: {', '.join(BACKGROUNDS)}")
    src, tint = _TEXTURES[name]
    raw = _skimage(src)
    if src == "moon":  # the moon is mostly flat grey: local contrast makes its craters a texture
        raw = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(raw)
    img = _rgb01(raw)
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA if side < s else cv2.INTER_CUBIC)
    if tint is not None:
        img = img * np.asarray(tint, np.float32)
    mean = img.mean(axis=(0, 1), keepdims=True)
    img = mean + _TEXTURE_CONTRAST * (img - mean)
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
