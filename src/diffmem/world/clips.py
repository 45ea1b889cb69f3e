"""One clip of the embedded world: its spec, its exact trajectory, its frames, its true flow, its caption.

A `ClipSpec` fully determines a clip: rendering is a pure function of the spec (no randomness), so any
code can re-render a training clip, or the same trajectory in another appearance
(`dataclasses.replace(spec, sprite="cat", background="grass")`, or `sprite_override` /
`background_override` for arbitrary pixels with the same sprite shape).

Coordinates: OpenCV's pixel-centre convention, x to the right, y down; the centre of pixel (row i,
column j) is (x=j, y=i). Motion parameters are in frame units (fractions of the frame side) so the same
spec renders at any `size`. Positions u in [0, 1] map to pixels as u * size - 0.5.

Motions (`MOTIONS`) and their parameters (`MOTION_PARAMS`, defaults shown there); t = i / (T - 1):

- ``static``   sprite at (cx, cy); nothing moves.
- ``linear``   sprite crosses (cx, cy) at mid-clip, travelling `length` along `direction` (right/left/up/down).
- ``circle``   one full turn (`turns`) of radius `radius` around (cx, cy), starting at angle `phase`;
  direction cw/ccw as seen on screen.
- ``zigzag``   travels `length` along `direction`; a triangle wave of amplitude `amplitude` and
  `cycles` periods across it.
- ``zoom_in`` / ``zoom_out``   sprite at (cx, cy); its size goes from `lo` to `hi` times `scale` (in) or back (out).
- ``pan``      the camera travels `length` frame sides along `direction`; the background slides the other
  way, and the sprite (if any) is fixed to the background.
- ``loop``     a figure eight (Lissajous 1:2) of half-width `width`, half-height `height`.
- ``bounce``   travels `length` right/left while hopping `bounces` times `height` high above the floor `cy`.
- ``spiral``   `turns` turns around (cx, cy) with the radius growing from `r0` to `r1`.

`loop`, `bounce` and `spiral` are the *signature* motions: the world puts each of them on one trajectory
(in version 1 one duplicated clip, in version 2 a few appearances), so that copying that motion in another
appearance is motion memorization.

Props (version-2 worlds): small static shapes drawn on the background texture (`Prop`), so that two clips
of one caption differ in more than the texture crop and a fresh render is not a near copy of a training
frame; they ride on the background, so a pan moves them and the true flow is unchanged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .assets import BACKGROUNDS, SPRITES, TEXTURE_STYLES, Sprite, load_sprite, load_texture

COMMON_MOTIONS = ("static", "linear", "circle", "zigzag", "zoom_in", "zoom_out", "pan")
SIGNATURE_MOTIONS = ("loop", "bounce", "spiral")
MOTIONS = COMMON_MOTIONS + SIGNATURE_MOTIONS

_AXIS = ("right", "left", "up", "down")
_TURN = ("cw", "ccw")
DIRECTIONS = {
    "static": ("",), "linear": _AXIS, "circle": _TURN, "zigzag": _AXIS, "zoom_in": ("",), "zoom_out": ("",),
    "pan": _AXIS, "loop": _TURN, "bounce": ("right", "left"), "spiral": _TURN,
}
_POS = {"cx": 0.5, "cy": 0.5, "scale": 0.4}
MOTION_PARAMS = {
    "static": dict(_POS),
    "linear": {**_POS, "length": 0.5},
    "circle": {**_POS, "radius": 0.22, "phase": 0.0, "turns": 1.0},
    "zigzag": {**_POS, "length": 0.5, "amplitude": 0.15, "cycles": 2.0},
    "zoom_in": {**_POS, "lo": 0.5, "hi": 1.5},
    "zoom_out": {**_POS, "lo": 0.5, "hi": 1.5},
    "pan": {**_POS, "length": 0.5},
    "loop": {**_POS, "width": 0.25, "height": 0.15, "phase": 0.0},
    "bounce": {**_POS, "cy": 0.75, "length": 0.5, "height": 0.35, "bounces": 2.0},
    "spiral": {**_POS, "r0": 0.04, "r1": 0.28, "turns": 2.0, "phase": 0.0},
}
TEXTURE_FACTOR = 4  # textures are TEXTURE_FACTOR x the frame side, so pans and crops have room

_UNIT = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
PROP_SHAPES = ("disc", "square", "diamond")
SIZE_WORDS = ("small", "big")  # caption attributes of version-2 worlds (no word: the middle size)


@dataclass(frozen=True)
class Prop:
    """A small static shape on the background: centre (u, v) in frame units of the first frame's view,
    radius `r` in frame units, colour (red, green, blue) in [0, 1]."""

    shape: str
    u: float
    v: float
    r: float
    color: tuple

    def __post_init__(self):
        if self.shape not in PROP_SHAPES:
            raise ValueError(f"unknown prop shape {self.shape!r}; known: {', '.join(PROP_SHAPES)}")
        object.__setattr__(self, "color", tuple(float(c) for c in self.color))

    def to_dict(self) -> dict:
        return {"shape": self.shape, "u": self.u, "v": self.v, "r": self.r, "color": list(self.color)}


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip. `params` holds motion parameters as sorted (name, value) pairs;
    build with `ClipSpec.make(...)` to pass them as keywords. A spec with n_frames == 1 is a still image."""

    sprite: str | None
    background: str
    motion: str = "static"
    direction: str = ""
    sprite_instance: int = 0
    params: tuple = ()
    bg_x: float = 0.5  # texture window origin, as a fraction of the room left in the texture (0..1)
    bg_y: float = 0.5
    n_frames: int = 16
    size: int = 64
    fps: float = 8.0
    props: tuple = ()  # of Prop (or their dicts), drawn on the texture
    texture: str = "tinted"  # background style (assets.TEXTURE_STYLES); version-2 worlds use "balanced"

    def __post_init__(self):
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; known: {', '.join(MOTIONS)}")
        if self.direction not in DIRECTIONS[self.motion]:
            raise ValueError(f"motion {self.motion!r} takes direction in {DIRECTIONS[self.motion]}, got {self.direction!r}")
        if self.sprite is None and self.motion not in ("static", "pan"):
            raise ValueError(f"motion {self.motion!r} needs a sprite")
        if self.sprite is not None and self.sprite not in SPRITES:
            raise ValueError(f"unknown sprite {self.sprite!r}; known: {', '.join(SPRITES)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; known: {', '.join(BACKGROUNDS)}")
        if self.texture not in TEXTURE_STYLES:
            raise ValueError(f"unknown texture style {self.texture!r}; known: {', '.join(TEXTURE_STYLES)}")
        if self.n_frames < 1 or self.size < 4 or self.fps <= 0:
            raise ValueError(f"need n_frames >= 1, size >= 4, fps > 0; got {self.n_frames}, {self.size}, {self.fps}")
        params = dict(self.params)
        unknown = set(params) - set(MOTION_PARAMS[self.motion])
        if unknown:
            raise ValueError(f"motion {self.motion!r} has no parameter(s) {sorted(unknown)}; "
                             f"it takes {sorted(MOTION_PARAMS[self.motion])}")
        object.__setattr__(self, "params", tuple(sorted((str(k), float(v)) for k, v in params.items())))
        object.__setattr__(self, "props", tuple(p if isinstance(p, Prop) else Prop(**p) for p in self.props))

    @classmethod
    def make(cls, sprite, background, motion="static", direction="", **kw) -> "ClipSpec":
        fields = {k: kw.pop(k) for k in list(kw) if k in cls.__dataclass_fields__}
        return cls(sprite, background, motion, direction, params=tuple(kw.items()), **fields)

    def param(self, name: str) -> float:
        """A motion parameter, or its default from MOTION_PARAMS."""
        return dict(self.params).get(name, MOTION_PARAMS[self.motion][name])

    @property
    def is_image(self) -> bool:
        return self.n_frames == 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = dict(self.params)
        if self.props:
            d["props"] = [p.to_dict() for p in self.props]
        else:
            del d["props"]  # version-1 specs stay as they were written
        if self.texture == "tinted":
            del d["texture"]  # so do specs written before texture styles
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipSpec":
        d = dict(d)
        d["params"] = tuple(dict(d.get("params", {})).items())
        d["props"] = tuple(d.get("props", ()))
        return cls(**d)

    def as_dict(self) -> dict:  # for diffmem.io.results.to_jsonable
        return self.to_dict()


@dataclass(frozen=True)
class Trajectory:
    """Per-frame truth, in pixels: sprite centre (x, y) and long side `scale` (NaN without a sprite),
    and the top-left corner (cam_x, cam_y) of the window cut from the texture."""

    x: np.ndarray
    y: np.ndarray
    scale: np.ndarray
    cam_x: np.ndarray
    cam_y: np.ndarray
    texture_side: int = field(default=0)


def texture_side(size: int) -> int:
    return TEXTURE_FACTOR * int(size)


def trajectory(spec: ClipSpec) -> Trajectory:
    """The exact sprite position/size and camera position of every frame of `spec`."""
    T, S, p, m = spec.n_frames, float(spec.size), spec.param, spec.motion
    t = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    cx, cy, scale = p("cx"), p("cy"), p("scale")
    x = np.full(T, cx)
    y = np.full(T, cy)
    sc = np.full(T, scale)
    side = texture_side(spec.size)
    room = side - spec.size
    cam_x = np.full(T, spec.bg_x * room)
    cam_y = np.full(T, spec.bg_y * room)
    sign = 1.0 if spec.direction == "cw" else -1.0  # y points down: increasing angle turns clockwise on screen
    if m == "linear":
        dx, dy = _UNIT[spec.direction]
        x, y = cx + (t - 0.5) * p("length") * dx, cy + (t - 0.5) * p("length") * dy
    elif m == "circle":
        a = p("phase") + sign * 2 * math.pi * p("turns") * t
        x, y = cx + p("radius") * np.cos(a), cy + p("radius") * np.sin(a)
    elif m == "zigzag":
        dx, dy = _UNIT[spec.direction]
        along = (t - 0.5) * p("length")
        across = p("amplitude") * (2 * np.abs(2 * ((p("cycles") * t + 0.25) % 1.0) - 1) - 1)  # triangle, starts at 0
        x, y = cx + along * dx - across * dy, cy + along * dy + across * dx
    elif m in ("zoom_in", "zoom_out"):
        f = t if m == "zoom_in" else 1.0 - t
        sc = scale * (p("lo") + (p("hi") - p("lo")) * f)
    elif m == "pan":
        dx, dy = _UNIT[spec.direction]
        travel = p("length") * spec.size
        if travel > room:
            raise ValueError(f"pan length {p('length')} is more than the texture allows ({room / spec.size:.2f})")
        # start so that the whole travel stays inside the texture; bg_x/bg_y place it in what is left
        cam_x = (spec.bg_x * (room - abs(dx) * travel) + (travel if dx < 0 else 0.0)) + dx * travel * t
        cam_y = (spec.bg_y * (room - abs(dy) * travel) + (travel if dy < 0 else 0.0)) + dy * travel * t
        x = cx - (cam_x - cam_x[0]) / S
        y = cy - (cam_y - cam_y[0]) / S
    elif m == "loop":
        a = 2 * math.pi * t + p("phase")
        x, y = cx + sign * p("width") * np.sin(a), cy + p("height") * np.sin(2 * a)
    elif m == "bounce":
        dx = _UNIT[spec.direction][0]
        x = cx + (t - 0.5) * p("length") * dx
        y = cy - p("height") * np.abs(np.sin(math.pi * p("bounces") * t))
    elif m == "spiral":
        a = p("phase") + sign * 2 * math.pi * p("turns") * t
        r = p("r0") + (p("r1") - p("r0")) * t
        x, y = cx + r * np.cos(a), cy + r * np.sin(a)
    x = np.asarray(x, float) * S - 0.5
    y = np.asarray(y, float) * S - 0.5
    sc = np.asarray(sc, float) * S
    if spec.sprite is None:
        x = y = sc = np.full(T, np.nan)
    return Trajectory(x, y, sc, np.asarray(cam_x, float), np.asarray(cam_y, float), side)


def _as_texture(img, side: int) -> np.ndarray:
    img = np.asarray(img)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"background_override must be (H, W, 3), got shape {img.shape}")
    return np.ascontiguousarray(cv2.resize(img[..., :3], (side, side), interpolation=cv2.INTER_AREA))


def place_sprite(sprite: Sprite, x: float, y: float, long_side: float, size: int | tuple[int, int]):
    """Premultiplied colour (H, W, 3) and alpha (H, W) of the sprite centred at (x, y), its long side
    `long_side` px, in a frame of `size` (side, or (H, W)). The one sprite renderer of the world and of
    `diffmem.world.synthetic`: sub-pixel placement by one affine warp, so the exact flow is known."""
    fh, fw = (size, size) if np.isscalar(size) else size
    h, w = sprite.alpha.shape
    s = long_side / max(h, w)
    # area-resize to about the target size first (no aliasing), then a near-identity sub-pixel warp
    w2, h2 = max(1, round(w * s)), max(1, round(h * s))
    pre = np.concatenate([sprite.rgb * sprite.alpha[..., None], sprite.alpha[..., None]], axis=2)
    pre = cv2.resize(pre, (w2, h2), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    if pre.ndim == 2:
        pre = pre[..., None]
    sx, sy = s * w / w2, s * h / h2
    M = np.array([[sx, 0.0, x - sx * (w2 - 1) / 2], [0.0, sy, y - sy * (h2 - 1) / 2]])
    out = cv2.warpAffine(pre, M, (fw, fh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = out.reshape(fh, fw, -1)
    return out[..., :3], np.clip(out[..., 3], 0.0, 1.0)


def _sprite_of(spec: ClipSpec, sprite_override) -> Sprite | None:
    if spec.sprite is None:
        return None
    if sprite_override is None:
        return load_sprite(spec.sprite, spec.sprite_instance)
    if isinstance(sprite_override, Sprite):
        return sprite_override
    a = np.asarray(sprite_override)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"sprite_override must be a Sprite or an RGBA array (h, w, 4), got shape {a.shape}")
    return Sprite(np.ascontiguousarray(a[..., :3]), np.ascontiguousarray(a[..., 3]))


def _with_props(tex: np.ndarray, spec: ClipSpec, cam_x: float, cam_y: float) -> np.ndarray:
    """A copy of the texture with the spec's props drawn on it (anti-aliased by coverage of a 1 px ramp)."""
    if not spec.props:
        return tex
    tex = tex.copy()
    S, side = spec.size, tex.shape[0]
    for p in spec.props:
        cx, cy, r = cam_x + p.u * S - 0.5, cam_y + p.v * S - 0.5, p.r * S
        x0, x1 = max(0, int(cx - r - 2)), min(side, int(cx + r + 3))
        y0, y1 = max(0, int(cy - r - 2)), min(side, int(cy + r + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = np.abs(xx - cx), np.abs(yy - cy)
        d = {"disc": np.hypot(dx, dy), "square": np.maximum(dx, dy), "diamond": (dx + dy) / math.sqrt(2)}[p.shape]
        a = np.clip(r - d + 0.5, 0.0, 1.0)[..., None]
        tex[y0:y1, x0:x1] = tex[y0:y1, x0:x1] * (1 - a) + a * np.asarray(p.color, np.float32)
    return tex


def render_clip(spec: ClipSpec, *, sprite_override=None, background_override=None,
                return_alpha: bool = False):
    """Frames of `spec` as uint8 (T, H, W, 3). Pure: the same spec gives the same array.

    sprite_override: a `Sprite` or RGBA array (h, w, 4) drawn instead of the spec's sprite (keep the
    alpha of `load_sprite(spec.sprite, spec.sprite_instance)` for the same shape in new colours).
    background_override: an (H, W, 3) image used as the texture (resized to texture_side(spec.size)).
    return_alpha: also return the sprite coverage (T, H, W) float32 in [0, 1].
    """
    side = texture_side(spec.size)
    tex = load_texture(spec.background, side, spec.texture) if background_override is None else _as_texture(background_override, side)
    sprite = _sprite_of(spec, sprite_override)
    tr = trajectory(spec)
    tex = _with_props(tex, spec, tr.cam_x[0], tr.cam_y[0])
    S = spec.size
    frames = np.empty((spec.n_frames, S, S, 3), np.uint8)
    alphas = np.zeros((spec.n_frames, S, S), np.float32)
    for i in range(spec.n_frames):
        M = np.array([[1.0, 0.0, -tr.cam_x[i]], [0.0, 1.0, -tr.cam_y[i]]])
        frame = cv2.warpAffine(tex, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if sprite is not None:
            col, a = place_sprite(sprite, tr.x[i], tr.y[i], tr.scale[i], S)
            frame = frame * (1.0 - a[..., None]) + col
            alphas[i] = a
        frames[i] = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return (frames, alphas) if return_alpha else frames


def true_flow(spec: ClipSpec, *, alpha_threshold: float = 0.5) -> np.ndarray:
    """Exact forward flow (T-1, H, W, 2) in pixels (dx, dy) from frame i to frame i+1: the sprite's motion
    (translation + scaling about its centre) where its coverage in frame i is above `alpha_threshold`,
    the background's motion (minus the camera step) elsewhere."""
    tr = trajectory(spec)
    _, alphas = render_clip(spec, return_alpha=True) if spec.sprite is not None else (None, None)
    S = spec.size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    flow = np.zeros((max(spec.n_frames - 1, 0), S, S, 2), np.float32)
    for i in range(spec.n_frames - 1):
        flow[i, ..., 0] = -(tr.cam_x[i + 1] - tr.cam_x[i])
        flow[i, ..., 1] = -(tr.cam_y[i + 1] - tr.cam_y[i])
        if spec.sprite is not None:
            k = tr.scale[i + 1] / tr.scale[i]
            fx = tr.x[i + 1] + k * (xx - tr.x[i]) - xx
            fy = tr.y[i + 1] + k * (yy - tr.y[i]) - yy
            on = alphas[i] > alpha_threshold
            flow[i, ..., 0][on] = fx[on]
            flow[i, ..., 1][on] = fy[on]
    return flow


# ---- captions: a small, regular vocabulary -------------------------------------------------------

def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


_TEMPLATES = {
    "linear": "{s} moves {d} across {b}",
    "circle": "{s} circles over {b}",
    "zigzag": "{s} zigzags across {b}",
    "zoom_in": "{s} grows over {b}",
    "zoom_out": "{s} shrinks over {b}",
    "loop": "{s} loops over {b}",
    "bounce": "{s} bounces across {b}",
    "spiral": "{s} spirals over {b}",
}


def caption_of(sprite: str | None, background: str, motion: str, direction: str = "", *, image: bool = False,
               attribute: str = "", tag: str = "") -> str:
    """The caption of a clip with these parts. Only linear motions and pans name their direction.
    Version-2 worlds add a size `attribute` before the sprite ("a small cat") and, on duplicated sources,
    a two-word `tag` after a comma ("..., museum archive"), the way memorized web captions are specific."""
    s = _a(f"{attribute} {sprite}" if attribute else sprite) if sprite else None
    if image:
        text = f"a picture of {s} on {background}" if s else f"a picture of {background}"
    elif motion == "static":
        text = f"a still view of {s} on {background}" if s else f"a still view of {background}"
    elif motion == "pan":
        text = f"the camera pans {direction} over {s} on {background}" if s else f"the camera pans {direction} over {background}"
    else:
        text = _TEMPLATES[motion].format(s=s, d=direction, b=background)
    return f"{text}, {tag}" if tag else text


def caption(spec: ClipSpec) -> str:
    return caption_of(spec.sprite, spec.background, spec.motion, spec.direction, image=spec.is_image)
