"""Planning a world: which sources exist, their captions, roles, copy counts and clip specs, and the
evaluation prompts. Pure functions of (seed, size): `build.make_world` renders and writes what they plan.

`plan_v1` / `prompts_v1` plan the version-1 worlds (sizes tiny, small, medium); `plan_v2` the
version-2 world (`plan_v2.py`). Both return `Source`s.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .assets import n_instances
from .clips import COMMON_MOTIONS, DIRECTIONS, SIGNATURE_MOTIONS, ClipSpec, caption_of

MOVING = ("linear", "circle", "zigzag", "zoom_in", "zoom_out")  # motions of duplicated / novel clips


@dataclass(frozen=True)
class WorldSize:
    """How big a world is. Counts are numbers of files; dup counts are copies per duplicated source."""

    name: str
    px: int
    n_frames: int
    fps: float
    sprites: tuple
    backgrounds: tuple
    video_dup_counts: tuple
    image_dup_counts: tuple
    caption_dup_counts: tuple
    n_unique_videos: int
    n_unique_images: int
    n_novel: int
    n_motion_prompts: int  # appearances per signature motion in the motion_memorization group


@dataclass
class Source:
    key: tuple  # (sprite, background, motion, caption direction) or (sprite, background, "image", "")
    role: str  # duplicated | caption_duplicated | unique | signature (version 2: another appearance of one)
    copies: int
    spec: ClipSpec | None = None
    name: str = ""
    ids: list = field(default_factory=list)
    attribute: str = ""  # version 2: size word of the caption
    tag: str = ""  # version 2: a duplicated source's caption tag

    @property
    def kind(self) -> str:
        return "image" if self.key[2] == "image" else "video"

    @property
    def caption(self) -> str:
        s, b, m, d = self.key
        return caption_of(s, b, "static" if m == "image" else m, d, image=m == "image", attribute=self.attribute,
                          tag=self.tag)


def _video_keys(cfg) -> list[tuple]:
    keys = []
    for s in cfg.sprites:
        for b in cfg.backgrounds:
            for m in COMMON_MOTIONS:
                for d in (DIRECTIONS[m] if m in ("linear", "pan") else ("",)):
                    keys.append((s, b, m, d))
    for b in cfg.backgrounds:
        keys.append((None, b, "static", ""))
        keys.extend((None, b, "pan", d) for d in DIRECTIONS["pan"])
    return keys


def _u(rng, lo, hi) -> float:
    return round(float(rng.uniform(lo, hi)), 4)


def _random_spec(rng: np.random.Generator, key: tuple, cfg) -> ClipSpec:
    """Draw the free parameters of a clip with this caption key (start, size, trajectory, texture crop)."""
    sprite, bg, motion, cap_dir = key
    image = motion == "image"
    motion = "static" if image else motion
    p: dict = {"scale": _u(rng, 0.32, 0.42)}
    direction = cap_dir
    if motion == "static":
        p.update(cx=_u(rng, 0.3, 0.7), cy=_u(rng, 0.3, 0.7))
    elif motion == "linear":
        p.update(length=_u(rng, 0.4, 0.55), cx=_u(rng, 0.3, 0.7), cy=_u(rng, 0.3, 0.7))
        if direction in ("right", "left"):
            p["cx"] = _u(rng, 0.45, 0.55)
        else:
            p["cy"] = _u(rng, 0.45, 0.55)
    elif motion == "circle":
        direction = str(rng.choice(DIRECTIONS["circle"]))
        p.update(cx=_u(rng, 0.42, 0.58), cy=_u(rng, 0.42, 0.58), radius=_u(rng, 0.16, 0.24), phase=_u(rng, 0, 6.2832))
    elif motion == "zigzag":
        direction = str(rng.choice(DIRECTIONS["zigzag"]))
        p.update(cx=_u(rng, 0.45, 0.55), cy=_u(rng, 0.45, 0.55), length=_u(rng, 0.4, 0.55),
                 amplitude=_u(rng, 0.1, 0.18), cycles=_u(rng, 1.5, 2.5))
    elif motion in ("zoom_in", "zoom_out"):
        p.update(cx=_u(rng, 0.4, 0.6), cy=_u(rng, 0.4, 0.6), lo=_u(rng, 0.4, 0.6), hi=_u(rng, 1.3, 1.6), scale=_u(rng, 0.3, 0.36))
    elif motion == "pan":
        length = _u(rng, 0.4, 0.6)
        dx = {"right": 1, "left": -1}.get(direction, 0)
        dy = {"down": 1, "up": -1}.get(direction, 0)
        # the sprite rides on the background: start it so that it crosses the middle of the view
        p.update(length=length, cx=round(0.5 + 0.5 * length * dx + (0 if dx else _u(rng, -0.2, 0.2)), 4),
                 cy=round(0.5 + 0.5 * length * dy + (0 if dy else _u(rng, -0.2, 0.2)), 4))
    elif motion == "loop":
        direction = str(rng.choice(DIRECTIONS["loop"]))
        p.update(cx=_u(rng, 0.45, 0.55), cy=_u(rng, 0.45, 0.55), width=_u(rng, 0.22, 0.28),
                 height=_u(rng, 0.13, 0.18), phase=_u(rng, 0, 6.2832))
    elif motion == "bounce":
        direction = str(rng.choice(DIRECTIONS["bounce"]))
        p.update(cx=_u(rng, 0.45, 0.55), cy=_u(rng, 0.72, 0.8), length=_u(rng, 0.4, 0.55),
                 height=_u(rng, 0.3, 0.4), bounces=float(rng.choice([2.0, 3.0])))
    elif motion == "spiral":
        direction = str(rng.choice(DIRECTIONS["spiral"]))
        p.update(cx=_u(rng, 0.45, 0.55), cy=_u(rng, 0.45, 0.55), r0=_u(rng, 0.02, 0.06), r1=_u(rng, 0.24, 0.3),
                 turns=_u(rng, 1.5, 2.5), phase=_u(rng, 0, 6.2832))
    if sprite is None:
        p = {k: v for k, v in p.items() if k == "length"}
    instance = int(rng.integers(n_instances(sprite))) if sprite else 0
    return ClipSpec(sprite, bg, motion, direction, sprite_instance=instance, params=tuple(p.items()),
                    bg_x=_u(rng, 0, 1), bg_y=_u(rng, 0, 1), n_frames=1 if image else cfg.n_frames,
                    size=cfg.px, fps=cfg.fps)


def _motion_part(key: tuple) -> tuple:
    return key[2], key[3]


def _interleave(keys: list[tuple], rng) -> list[tuple]:
    """Shuffled keys, motions taking turns: every prefix of the pool mixes all motions evenly
    (linear motions and pans have four captions per appearance, the others one)."""
    keys = list(keys)
    rng.shuffle(keys)
    by_motion = defaultdict(list)
    for k in keys:
        by_motion[k[2]].append(k)
    order = sorted(by_motion)
    rng.shuffle(order)
    out = []
    while len(out) < len(keys):
        for m in order:
            if by_motion[m]:
                out.append(by_motion[m].pop())
    return out


def plan_v1(seed: int, cfg):
    rng = np.random.default_rng(seed)
    pool = _interleave(_video_keys(cfg), rng)
    moving = [k for k in pool if k[0] is not None and k[2] in MOVING]
    n_reserve = 3 * cfg.n_novel  # candidates for novel prompts, kept out of training
    reserved = moving[:n_reserve]
    taken = set(reserved)
    sources: list[Source] = []

    def take(pred) -> tuple | None:
        for k in pool:
            if k not in taken and pred(k):
                taken.add(k)
                return k
        return None

    # duplicated videos: groups 0, 2, 4 carry the signature motions, the others a common moving motion
    apps = [(s, b) for s in cfg.sprites for b in cfg.backgrounds]
    for j, count in enumerate(cfg.video_dup_counts):
        if j % 2 == 0 and j // 2 < len(SIGNATURE_MOTIONS):
            s, b = apps[int(rng.integers(len(apps)))]
            key = (s, b, SIGNATURE_MOTIONS[j // 2], "")
        else:
            key = take(lambda k: k[0] is not None and k[2] in MOVING)
        sources.append(Source(key, "duplicated", count))
    for count in cfg.caption_dup_counts:
        key = take(lambda k: k[0] is not None and k[2] in MOVING)
        sources.extend(Source(key, "caption_duplicated", 1) for _ in range(count))
    # unique videos: first cover every sprite, background and motion, so that novel prompts are recognisable
    covered = set()
    for src in sources:
        covered |= {src.key[0], src.key[1], _motion_part(src.key)}
    uniques = []
    for k in pool:
        if len(uniques) >= cfg.n_unique_videos:
            break
        parts = {k[0], k[1], _motion_part(k)} - {None}
        if k not in taken and not parts <= covered:
            taken.add(k)
            uniques.append(k)
            covered |= parts
    uniques += [k for k in pool if k not in taken][:cfg.n_unique_videos - len(uniques)]
    # more unique clips than captions: captions repeat (recorded in shared_captions), never those of the
    # duplicate groups, caption groups or reserved novel prompts
    grouped = {s.key for s in sources}
    allowed = [k for k in pool if k not in grouped and k not in reserved]
    uniques += [allowed[i % len(allowed)] for i in range(cfg.n_unique_videos - len(uniques))]
    sources.extend(Source(k, "unique", 1) for k in uniques)
    # images
    img_keys = [(s, b, "image", "") for s in cfg.sprites for b in cfg.backgrounds]
    rng.shuffle(img_keys)
    for j, count in enumerate(cfg.image_dup_counts):
        sources.append(Source(img_keys[j % len(img_keys)], "duplicated", count))
    n_dup = len(cfg.image_dup_counts)
    for j in range(cfg.n_unique_images):
        sources.append(Source(img_keys[n_dup + j % (len(img_keys) - n_dup)], "unique", 1))
    for src in sources:
        src.spec = _random_spec(rng, src.key, cfg)
    assign_ids(sources, rng)
    return sources, reserved, rng


def assign_ids(sources: list[Source], rng) -> None:
    """File ids and source names. All files are shuffled so copies are not adjacent; ids carry no hint
    of duplication."""
    files = [(i, c) for i, src in enumerate(sources) for c in range(src.copies)]
    order = rng.permutation(len(files))
    n_vid = n_img = 0
    for pos in order:
        i, _ = files[pos]
        src = sources[i]
        if src.kind == "video":
            src.ids.append(f"vid{n_vid:04d}")
            n_vid += 1
        else:
            src.ids.append(f"img{n_img:04d}")
            n_img += 1
    for i, src in enumerate(sources):
        src.name = f"src{i:04d}"


def prompt_record(prompt, group, train_ids, key, **extra) -> dict:
    """One line of prompts.jsonl for a caption key (sprite, background, motion, direction)."""
    s, b, m, d = key
    return {"prompt": prompt, "group": group, "train_ids": sorted(train_ids), "sprite": s, "background": b,
            "motion": "static" if m == "image" else m, "direction": d, **extra}


def planted_prompts(sources: list[Source], reserved: list[tuple], cfg) -> list[dict]:
    """The groups both versions share: duplicated video / image, duplicated caption, novel."""
    train_keys = {s.key for s in sources}
    video = [s for s in sources if s.kind == "video"]
    seen_parts = {s.key[0] for s in video} | {s.key[1] for s in video} | {_motion_part(s.key) for s in video}
    out = [prompt_record(s.caption, f"duplicated_{s.kind}", s.ids, s.key) for s in sources if s.role == "duplicated"]
    by_caption = defaultdict(list)
    for s in sources:
        if s.role == "caption_duplicated":
            by_caption[s.key].append(s)
    for key, group in by_caption.items():
        out.append(prompt_record(group[0].caption, "duplicated_caption", [i for g in group for i in g.ids], key))
    novel = [k for k in reserved if k not in train_keys and {k[0], k[1], _motion_part(k)} <= seen_parts]
    out.extend(prompt_record(caption_of(*k), "novel", [], k) for k in novel[:cfg.n_novel])
    return out


def appearances_and_motions(video: list[Source]) -> tuple[dict, Counter]:
    """(sprite, background) -> training ids showing it; (motion, direction) -> its number of distinct sources."""
    apps = defaultdict(list)
    for s in video:
        if s.key[0] is not None:
            apps[(s.key[0], s.key[1])].extend(s.ids)
    return apps, Counter(_motion_part(s.key) for s in video)


def prompts_v1(sources: list[Source], reserved: list[tuple], rng, cfg):
    train_keys = {s.key for s in sources}
    video = [s for s in sources if s.kind == "video"]
    rec = prompt_record
    out = planted_prompts(sources, reserved, cfg)
    # motion memorization: appearance B (seen in training) x signature motion of another appearance A
    apps, motion_sources = appearances_and_motions(video)
    used_apps: set = set()
    used_novel = {(p["sprite"], p["background"], p["motion"], p["direction"]) for p in out if p["group"] == "novel"}
    for s in sources:
        if s.kind != "video" or s.key[2] not in SIGNATURE_MOTIONS:
            continue
        a_sprite, a_bg, sig, _ = s.key
        cands = sorted(k for k in apps if k[0] != a_sprite and k[1] != a_bg)
        fresh = [k for k in cands if k not in used_apps]  # prefer appearances no other signature uses
        cands = fresh if len(fresh) >= cfg.n_motion_prompts else cands
        picks = [cands[i] for i in rng.permutation(len(cands))[:cfg.n_motion_prompts]]
        used_apps.update(picks)
        for b_sprite, b_bg in picks:
            extra = {"appearance_ids": sorted(apps[(b_sprite, b_bg)]), "signature_source_ids": sorted(s.ids)}
            out.append(rec(caption_of(b_sprite, b_bg, sig), "motion_memorization", s.ids, (b_sprite, b_bg, sig, ""),
                           role="memorized", **extra))
            # control: the most widely shared moving motion not captioned for B (else the most shared one)
            commons = sorted((m for m in motion_sources if m[0] in MOVING), key=lambda m: (-motion_sources[m], m))
            free = [m for m in commons if (b_sprite, b_bg, *m) not in train_keys and (b_sprite, b_bg, *m) not in used_novel]
            m = (free or commons)[0]
            ck = (b_sprite, b_bg, *m)
            ids = [i for x in video if x.key == ck for i in x.ids]
            out.append(rec(caption_of(*ck), "motion_memorization", ids, ck, role="control", **extra))
    return out
