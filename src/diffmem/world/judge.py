"""The embedded world's judge: does a generated clip show the captioned sprite and motion?

A zero-shot check built from the world itself: the sprite by analysis by synthesis with the world's
sprites and textures, the motion by the nearest (OFS-k) of reference trajectories of every motion.
Library layers never import this package; studies and benchmarks use it on the embedded world.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable

import cv2
import numpy as np

from ..errors import DiffmemError
from ..features.motion import VideoMotion, describe_motion
from ..io.video import resize_frames
from .assets import load_sprite, load_texture, n_instances
from .build import item_specs
from .clips import BACKGROUNDS, DIRECTIONS, SIZE_WORDS, SPRITES, ClipSpec, caption_of, texture_side, true_flow


def world_paths(world) -> list[ClipSpec]:
    """The clips of a world folder (`make_world`), as `WorldAlignment(paths=...)` takes them."""
    return [s for s in item_specs(world).values() if s.n_frames > 1]


def _distinct_paths(specs: Iterable[ClipSpec]) -> list[tuple]:
    """(motion, direction, path parameters) of each distinct moving path; the sprite's size is kept only
    for zooms (it is their motion), so clips that differ only in sprite size share a path."""
    out = {}
    for s in specs:
        if s.motion == "static":
            continue
        params = tuple((k, v) for k, v in s.params if k != "scale" or s.motion in ("zoom_in", "zoom_out"))
        out.setdefault((s.motion, s.direction, params), None)
    if not out:
        raise DiffmemError("world alignment: no moving clips among the given paths")
    return list(out)


@dataclass(frozen=True)
class WorldCaption:
    sprite: str | None
    background: str
    motion: str
    direction: str


def parse_world_caption(caption: str) -> WorldCaption | None:
    """The parts of a caption written by the world's `caption_of`, or None if it is not one. A size word
    and a duplicate's tag (version-2 captions) are allowed and not returned: the judge checks sprite and motion."""
    text = " ".join(caption.lower().split()).split(",")[0].strip()
    sizes = "|".join(SIZE_WORDS)
    text = re.sub(rf"\ba ({sizes}) (\w)", lambda m: ("an " if m.group(2) in "aeiou" else "a ") + m.group(2), text)
    for sprite in (None, *SPRITES):
        if sprite is not None and sprite not in text:
            continue
        for bg in BACKGROUNDS:
            if bg not in text:
                continue
            for motion, dirs in DIRECTIONS.items():
                for d in dirs:
                    try:
                        if caption_of(sprite, bg, motion, d) == text:
                            return WorldCaption(sprite, bg, motion, d)
                    except (KeyError, TypeError):
                        continue
    return None


class WorldAlignment:
    """Does a generated clip show the captioned sprite and motion? (embedded world only)

    Sprite, by analysis-by-synthesis with the world's own assets: each frame is located in the
    caption's background texture (the offset with the least squared difference), and for every sprite
    kind (3 instances x 3 sizes, every position) the squared error of "background + this sprite here"
    is compared with "background alone"; the kind that explains the frames best (mean over frames of its
    best relative improvement) is the sprite shown. Motion: the clip's OFS-k windows (DIS flow, the
    motion metric's definitions) against the exact flow of reference clips of every motion and
    direction; the best-matching reference names the motion ("static" when no window moves).
    A clip is aligned when both agree with the caption; `compute()` returns the three rates.

    Measured on rendered world clips (23, every motion, random sprites, backgrounds and texture
    offsets): sprite 100 %, and 96 % / 87 % after a Gaussian blur of 0.8 / 1.2 px (tiny-model-like).
    """

    UPSCALE = 2        # frames and assets are compared at 2x the clip size
    BLUR = 1.5         # analysis blur (px at 2x) on frames, texture and sprites alike: tolerates soft samples
    SCALES = (0.25, 0.4, 0.6)  # sprite long side, in frame sides (the world's zooms span ~0.2-0.6)
    INSTANCES = 3

    def __init__(self, size: int = 32, n_frames: int = 8, fps: float = 4.0, static_px: float = 0.5,
                 clip_seconds: float = 2.0, paths: Iterable[ClipSpec] | None = None, texture: str | None = None):
        self.size, self.n_frames, self.fps, self.static_px = int(size), int(n_frames), float(fps), float(static_px)
        paths = None if paths is None else list(paths)
        # the backgrounds as the world drew them (version-2 worlds: "balanced"); by default the paths' style
        styles = {p.texture for p in paths or ()}
        self.texture = texture or (styles.pop() if len(styles) == 1 else "tinted")
        # the motion references: one clip per motion and direction at the clips' default path, or, given a
        # world's clips (`world_paths`), one per distinct path the world uses: windows of OFS-k are tied to
        # where the sprite moves, and a world's paths start elsewhere than the default
        self.paths = None if paths is None else _distinct_paths(paths)
        # reference clips span a world clip's whole duration (the small, medium and large worlds' 16 frames
        # at 8 fps) at the model's rate, so a model that makes the first second of them (8 frames at 8 fps)
        # is judged on that part of each motion, and one that makes all of it (8 at 4 fps) on all of it
        self.clip_seconds = float(clip_seconds)
        self._templates = None
        self._textures: dict[str, np.ndarray] = {}
        self._motion_refs: tuple[np.ndarray, list[tuple[str, str]]] | None = None
        self.rows: list[dict] = []

    def reset(self) -> None:
        self.rows = []

    def _sprite_templates(self):
        if self._templates is None:
            side, out = self.size * self.UPSCALE, {}
            for kind in SPRITES:
                temps = []
                for inst in range(min(self.INSTANCES, n_instances(kind))):
                    sp = load_sprite(kind, inst)
                    h, w = sp.alpha.shape
                    for s in self.SCALES:
                        f = s * side / max(h, w)
                        nh, nw = max(3, round(h * f)), max(3, round(w * f))
                        rgb = cv2.resize(sp.rgb, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
                        a = cv2.resize(sp.alpha, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32)
                        a3 = np.repeat(a[..., None], 3, axis=2)
                        ra = cv2.GaussianBlur(rgb * a3, (0, 0), self.BLUR)
                        a3 = cv2.GaussianBlur(a3, (0, 0), self.BLUR)
                        temps.append((a3, ra, a3 * a3, a3 * ra, float((ra ** 2).sum())))
                out[kind] = temps
            self._templates = out
        return self._templates

    def _texture(self, background: str) -> np.ndarray:
        if background not in self._textures:
            tex = load_texture(background, texture_side(self.size), self.texture)
            tex = cv2.resize(tex, None, fx=self.UPSCALE, fy=self.UPSCALE, interpolation=cv2.INTER_LINEAR)
            self._textures[background] = cv2.GaussianBlur(tex.astype(np.float32), (0, 0), self.BLUR)
        return self._textures[background]

    def sprite_scores(self, frames_uint8: np.ndarray, background: str) -> dict[str, float]:
        """Per sprite kind: mean over frames of min over placements of
        (SSE(background + sprite) - SSE(background)) / SSE(background); lower = better explained."""
        tex = self._texture(background)
        side = self.size * self.UPSCALE
        temps = self._sprite_templates()
        scores = {k: [] for k in temps}

        def cc(img, t):
            return cv2.matchTemplate(img, t, cv2.TM_CCORR)

        for fr in resize_frames(np.asarray(frames_uint8), (self.size, self.size)):
            f = cv2.resize(fr, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
            f = cv2.GaussianBlur(f, (0, 0), self.BLUR)
            r = cv2.matchTemplate(tex, f, cv2.TM_SQDIFF)
            y, x = np.unravel_index(int(r.argmin()), r.shape)
            bg = np.ascontiguousarray(tex[y:y + side, x:x + side])
            g = f - bg
            base = float((g ** 2).sum()) + 1e-6
            gbg, bg2 = g * bg, bg * bg
            for kind, ts in temps.items():
                best = 0.0
                for a3, ra, a2, ara, c in ts:
                    # sum over the sprite window of (g + a bg - a rgb)^2 - g^2, expanded into correlations
                    v = 2 * cc(gbg, a3) - 2 * cc(g, ra) + cc(bg2, a2) - 2 * cc(bg, ara) + c
                    best = min(best, float(v.min()))
                scores[kind].append(best / base)
        return {k: float(np.mean(v)) for k, v in scores.items()}

    def _motions(self):
        if self._motion_refs is None:
            n = max(self.n_frames, round(self.clip_seconds * self.fps))
            if self.paths is None:
                refs = [ClipSpec.make("coin", "grass", motion, d) for motion, dirs in DIRECTIONS.items()
                        if motion != "static" for d in dirs]
            else:
                refs = [ClipSpec.make("coin", "grass", m, d, **dict(params)) for m, d, params in self.paths]
            wins, labels = [], []
            for spec in refs:
                spec = replace(spec, n_frames=n, size=self.size, fps=self.fps)
                vm = VideoMotion.from_flows(true_flow(spec))
                keep = vm.motion > 0
                wins.append(vm.windows[keep])
                labels += [(spec.motion, spec.direction)] * int(keep.sum())
            self._motion_refs = (np.concatenate(wins), labels)
        return self._motion_refs

    def judge(self, frames_uint8: np.ndarray, caption: str) -> dict:
        """{"sprite_ok", "motion_ok", "aligned", "sprite", "motion", "direction"} for one clip."""
        want = parse_world_caption(caption)
        if want is None:
            raise DiffmemError(f"world alignment: {caption!r} is not a caption of the embedded world")
        frames = np.asarray(frames_uint8)
        if frames.ndim == 3:
            frames = frames[None]
        row = {"caption": caption}
        if want.sprite is None:
            row["sprite"], row["sprite_ok"] = None, True
        else:
            sc = self.sprite_scores(frames, want.background)
            row["sprite"] = min(sc, key=sc.get)
            row["sprite_ok"] = row["sprite"] == want.sprite
        if len(frames) < 2:
            row["motion"], row["direction"], row["motion_ok"] = None, "", True
        else:
            vm = describe_motion(frames)
            moving = vm.motion > self.static_px
            if not moving.any():
                row["motion"], row["direction"] = "static", ""
            else:
                refs, labels = self._motions()
                sims = vm.windows[moving] @ refs.T
                j = int(np.unravel_index(int(np.argmax(sims)), sims.shape)[1])
                row["motion"], row["direction"] = labels[j]
            # captions name the direction of linear motions and pans only
            named = want.motion in ("linear", "pan")
            row["motion_ok"] = row["motion"] == want.motion and (not named or row["direction"] == want.direction)
        row["aligned"] = bool(row["sprite_ok"] and row["motion_ok"])
        return row

    def update(self, frames_uint8: np.ndarray, caption: str) -> dict:
        row = self.judge(frames_uint8, caption)
        self.rows.append(row)
        return row

    def compute(self) -> dict:
        if not self.rows:
            raise DiffmemError("world alignment: no clips given")
        n = len(self.rows)
        return {"aligned": sum(r["aligned"] for r in self.rows) / n,
                "sprite": sum(r["sprite_ok"] for r in self.rows) / n,
                "motion": sum(r["motion_ok"] for r in self.rows) / n, "n": n}

    def describe(self) -> dict:
        return {"metric": "world alignment", "size": self.size, "n_frames": self.n_frames, "fps": self.fps,
                "clip_seconds": self.clip_seconds,
                "static_px": self.static_px, "blur": self.BLUR, "scales": list(self.SCALES)}
