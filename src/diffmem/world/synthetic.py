"""Videos with a known optical flow: camera translation / rotation / zoom, and moving sprites.

Used to check flow backends (endpoint error against the exact flow), to benchmark them, and to
build motion corpora where the ground truth is known (same trajectory, other appearance).
Every frame is rendered from the seed directly (no chain of re-interpolations), so the exact
flow between frames i and i+1 is known in closed form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .assets import Sprite
from .clips import place_sprite


def texture(height: int, width: int, seed: int = 0, scales=(1.0, 2.0, 4.0, 8.0)) -> np.ndarray:
    """Band-limited random colour texture, uint8 (H, W, 3): structure at several scales, like a photo."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for s in scales:
        noise = rng.standard_normal((height, width, 3)).astype(np.float32)
        img += cv2.GaussianBlur(noise, (0, 0), s) * s
    img -= img.mean(axis=(0, 1))
    img /= img.std(axis=(0, 1)) + 1e-6
    return np.clip(128 + 45 * img, 0, 255).astype(np.uint8)


def _affine(kind: str, amount, centre: tuple[float, float]) -> np.ndarray:
    """2x3 forward matrix M of one frame step: a point p of frame i is at M p in frame i+1."""
    cx, cy = centre
    if kind == "translate":
        dx, dy = amount
        return np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    if kind == "rotate":  # degrees per frame, counter-clockwise on screen (y down)
        a = math.radians(amount)
        c, s = math.cos(a), math.sin(a)
        r = np.array([[c, s], [-s, c]])
    elif kind == "zoom":  # scale factor per frame about the centre
        r = np.eye(2) * float(amount)
    else:
        raise ValueError(f"unknown motion kind {kind!r}")
    t = np.array([cx, cy]) - r @ np.array([cx, cy])
    return np.hstack([r, t[:, None]])


def _power(m: np.ndarray, n: int) -> np.ndarray:
    full = np.vstack([m, [0, 0, 1]])
    return np.linalg.matrix_power(full, n)[:2]


def camera_video(kind: str, amount, n_frames: int = 8, size: tuple[int, int] = (128, 128), seed: int = 0,
                 scene: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A camera move over a textured scene with the exact flow.

    kind: ``translate`` (amount = (dx, dy) pixels per frame of *content* motion), ``rotate``
    (degrees per frame) or ``zoom`` (scale per frame, > 1 zooms in). Returns uint8 (T, H, W, 3)
    frames and float32 (T-1, H, W, 2) flow. The scene is rendered larger than the frame so no
    border ever enters the view.
    """
    h, w = size
    m = _affine(kind, amount, ((w - 1) / 2, (h - 1) / 2))
    if scene is None:
        scene = texture(3 * h, 3 * w, seed)
    sh, sw = scene.shape[:2]
    # Frame i = scene cropped around its centre, then moved by M^i (sampled in the scene's coordinates).
    off = np.array([(sw - w) / 2, (sh - h) / 2])
    frames = []
    for i in range(n_frames):
        mi = _power(m, i)
        # frame_i(M^i q) = base(q): sample base at M^-i p, base(q) = scene(q + off).
        inv = cv2.invertAffineTransform(mi)
        inv[:, 2] += off
        frames.append(cv2.warpAffine(scene, inv, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_REFLECT))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([xs, ys], -1)
    step = pts @ m[:, :2].T + m[:, 2] - pts  # u(p) = M p - p, the same for every step
    flow = np.repeat(step[None].astype(np.float32), max(n_frames - 1, 0), axis=0)
    return np.stack(frames), flow


SHAPES = ("disk", "square", "triangle", "cross", "ring")


def sprite_mask(shape: str, size: int) -> np.ndarray:
    """float32 (size, size) alpha in [0, 1] of a simple shape (anti-aliased by 4x supersampling)."""
    n = size * 4
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n * 2 - 1  # [-1, 1]
    if shape == "disk":
        m = xx ** 2 + yy ** 2 <= 0.9 ** 2
    elif shape == "square":
        m = (abs(xx) <= 0.8) & (abs(yy) <= 0.8)
    elif shape == "triangle":
        m = (yy <= 0.8) & (2 * abs(xx) <= yy + 0.8)  # apex up
    elif shape == "cross":
        m = ((abs(xx) <= 0.3) | (abs(yy) <= 0.3)) & (abs(xx) <= 0.9) & (abs(yy) <= 0.9)
    elif shape == "ring":
        r2 = xx ** 2 + yy ** 2
        m = (r2 <= 0.9 ** 2) & (r2 >= 0.45 ** 2)
    else:
        raise ValueError(f"unknown sprite shape {shape!r}; one of {SHAPES}")
    return m.reshape(size, 4, size, 4).mean(axis=(1, 3)).astype(np.float32)


def random_trajectory(n_frames: int, size: tuple[int, int], sprite: int, rng: np.random.Generator,
                      speed: tuple[float, float] = (1.0, 3.0)) -> np.ndarray:
    """Smooth random path (T, 2) of the sprite's top-left corner, in pixels, kept inside the frame.

    A random start, velocity and turning rate: distinct seeds give distinct trajectories.
    """
    h, w = size
    lo, hi = np.array([1.0, 1.0]), np.array([w - sprite - 1.0, h - sprite - 1.0])
    pos = lo + rng.random(2) * (hi - lo)
    angle, turn = rng.uniform(0, 2 * math.pi), rng.uniform(-0.35, 0.35)
    v = rng.uniform(*speed)
    out = [pos.copy()]
    for _ in range(n_frames - 1):
        step = v * np.array([math.cos(angle), math.sin(angle)])
        nxt = pos + step
        for a in range(2):  # bounce off the frame edges
            if nxt[a] < lo[a] or nxt[a] > hi[a]:
                step[a] = -step[a]
                angle = math.atan2(step[1], step[0])
        pos = np.clip(pos + step, lo, hi)
        out.append(pos.copy())
        angle += turn
    return np.asarray(out)


def sprite_video(trajectory: np.ndarray, shape: str = "disk", sprite: int = 24, size: tuple[int, int] = (128, 128),
                 sprite_seed: int = 0, background_seed: int = 1, background: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A textured sprite moving along `trajectory` over a static textured background.

    Returns uint8 (T, H, W, 3) frames and the exact float32 (T-1, H, W, 2) flow: the sprite's
    step inside the sprite (alpha >= 0.5 in frame i), zero elsewhere.
    The same trajectory and shape with other seeds = the same motion in another appearance.
    """
    h, w = size
    tex = texture(sprite, sprite, sprite_seed, scales=(1.0, 2.0)).astype(np.float32) / 255.0
    sp = Sprite(tex, sprite_mask(shape, sprite))
    bg = (texture(h, w, background_seed) if background is None else background).astype(np.float32) / 255.0
    c = (sprite - 1) / 2  # trajectory gives the top-left corner; place_sprite takes the centre
    frames, masks = [], []
    for x, y in trajectory:
        col, a = place_sprite(sp, x + c, y + c, sprite, (h, w))
        frames.append(np.clip(np.rint((bg * (1 - a[..., None]) + col) * 255.0), 0, 255).astype(np.uint8))
        masks.append(a >= 0.5)
    traj = np.asarray(trajectory, np.float32)
    flow = np.zeros((max(len(traj) - 1, 0), h, w, 2), np.float32)
    for i in range(len(traj) - 1):
        flow[i][masks[i]] = traj[i + 1] - traj[i]
    return np.stack(frames), flow


def still_video(n_frames: int = 16, size: tuple[int, int] = (64, 64), seed: int = 0, noise: float = 2.0,
                ) -> np.ndarray:
    """A static shot: one textured frame repeated, with independent sensor-like noise per frame."""
    rng = np.random.default_rng(seed + 7919)
    base = texture(*size, seed).astype(np.float32)
    frames = [np.clip(base + rng.normal(0, noise, base.shape), 0, 255) for _ in range(n_frames)]
    return np.stack(frames).round().astype(np.uint8)


@dataclass
class SynthClip:
    """One clip of a synthetic motion corpus: frames, the exact flow, and what it is."""

    id: str
    frames: np.ndarray
    flow: np.ndarray
    kind: str                        # sprite | pan | zoom | still
    label: str = "none"              # generated items: the expected motion verdict, "motion" or "none"
    source: str | None = None        # generated copies: the training id whose motion they copy
    offset: int = 0                  # generated sub-clips: first frame in the source clip


def motion_corpus(seed: int = 0, size: int = 64, n_frames: int = 16, n_sprites: int = 16, n_duplicates: int = 3,
                  pan_directions: int = 8, pans_per_direction: int = 6, n_zooms: int = 10, n_stills: int = 4, n_copies: int = 8,
                  n_subclips: int = 4, n_novel: int = 8, n_new_pans: int = 8, n_new_stills: int = 4,
                  n_new_zooms: int = 2) -> tuple[list[SynthClip], list[SynthClip]]:
    """A training set and generated set with known motion relations, at the embedded world's scale.

    Training: sprites on random trajectories (the first one with `n_duplicates` exact copies),
    camera pans in `pan_directions` evenly spaced directions (+-8 degrees jitter, random speed), zooms
    in and out, still shots. Generated: *copies* of a training trajectory with another sprite texture
    and background (label "motion": full clips, the first one of the duplicated clip, and sub-clips
    starting mid-way), and "none" items: novel trajectories, still shots, and pans (within 10 degrees
    of a training direction) and zooms over new content.
    """
    rng = np.random.default_rng(seed)
    hw = (size, size)
    spr = max(8, size // 5)
    train: list[SynthClip] = []
    gen: list[SynthClip] = []
    s = 1000 * seed
    sprites = []
    for i in range(n_sprites):
        tr = random_trajectory(n_frames, hw, spr, rng)
        shape = SHAPES[i % len(SHAPES)]
        f, fl = sprite_video(tr, shape, spr, hw, sprite_seed=s + 10 * i, background_seed=s + 10 * i + 1)
        sprites.append((tr, shape))
        train.append(SynthClip(f"sprite{i:02d}", f, fl, "sprite"))
    for d in range(n_duplicates):
        c = train[0]
        train.append(SynthClip(f"sprite00_dup{d}", c.frames.copy(), c.flow.copy(), "sprite"))
    step = 360.0 / max(pan_directions, 1)
    for d in range(pan_directions):
        for j in range(pans_per_direction):
            ang = math.radians(step * d + rng.uniform(-8, 8))
            v = rng.uniform(0.8, 2.5)
            f, fl = camera_video("translate", (v * math.cos(ang), v * math.sin(ang)), n_frames, hw,
                                 seed=s + 500 + 10 * d + j)
            train.append(SynthClip(f"pan{d}_{j}", f, fl, "pan"))
    for j in range(n_zooms):
        z = rng.uniform(1.02, 1.05) if j % 2 == 0 else 1 / rng.uniform(1.02, 1.05)
        f, fl = camera_video("zoom", z, n_frames, hw, seed=s + 700 + j)
        train.append(SynthClip(f"zoom{j}", f, fl, "zoom"))
    for j in range(n_stills):
        train.append(SynthClip(f"still{j}", still_video(n_frames, hw, s + 800 + j),
                               np.zeros((n_frames - 1, size, size, 2), np.float32), "still"))
    # Generated: motion copies in another appearance.
    for i in range(min(n_copies, n_sprites)):
        tr, shape = sprites[i]
        f, fl = sprite_video(tr, shape, spr, hw, sprite_seed=s + 5000 + i, background_seed=s + 5100 + i)
        gen.append(SynthClip(f"copy{i:02d}", f, fl, "sprite", "motion", f"sprite{i:02d}", 0))
    for i in range(n_subclips):
        src = (n_sprites - 1 - i) % n_sprites
        tr, shape = sprites[src]
        off = int(rng.integers(3, n_frames // 2))
        f, fl = sprite_video(tr[off:], shape, spr, hw, sprite_seed=s + 5200 + i, background_seed=s + 5300 + i)
        gen.append(SynthClip(f"subclip{i:02d}", f, fl, "sprite", "motion", f"sprite{src:02d}", off))
    for i in range(n_novel):
        tr = random_trajectory(n_frames, hw, spr, rng)
        f, fl = sprite_video(tr, SHAPES[i % len(SHAPES)], spr, hw, sprite_seed=s + 6000 + i,
                             background_seed=s + 6100 + i)
        gen.append(SynthClip(f"novel{i:02d}", f, fl, "sprite"))
    for j in range(n_new_pans):
        ang = math.radians(step * int(rng.integers(max(pan_directions, 1))) + rng.uniform(-10, 10))
        v = rng.uniform(0.8, 2.5)
        f, fl = camera_video("translate", (v * math.cos(ang), v * math.sin(ang)), n_frames, hw, seed=s + 7000 + j)
        gen.append(SynthClip(f"newpan{j}", f, fl, "pan"))
    for j in range(n_new_zooms):
        f, fl = camera_video("zoom", 1.03 if j % 2 == 0 else 1 / 1.03, n_frames, hw, seed=s + 7500 + j)
        gen.append(SynthClip(f"newzoom{j}", f, fl, "zoom"))
    for j in range(n_new_stills):
        gen.append(SynthClip(f"newstill{j}", still_video(n_frames, hw, s + 7800 + j),
                             np.zeros((n_frames - 1, size, size, 2), np.float32), "still"))
    return train, gen
