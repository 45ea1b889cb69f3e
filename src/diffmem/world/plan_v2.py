"""Planning a version-2 world ("diffmem-world/2"): memorization is rare and prompt-specific, as in real
training sets (DESIGN.md, "The embedded world").

- **A compositional bulk.** Over a thousand distinct clips and pictures whose captions are almost all
  unique: sprite x background x motion (and direction) x a size word ("a small cat", "a cat", "a big
  cat"). A caption does not fix the pixels: every clip has its own sprite instance, texture crop, start
  and `n_props` small static shapes (`clips.Prop`) on its background.
- **Shared paths for common motions.** Each common moving motion and direction has `path_variants`
  trajectories that every clip with that motion reuses, so a motion word means a learnable trajectory
  and its motion is shared by many distinct clips (natural-motion filtering discounts it).
- **Rare, specific duplicates.** At most 5 % of the files are copies of a few duplicated sources; each has
  its own two-word caption tag ("..., museum archive") that no other caption uses, the way memorized web
  captions are specific. Copy counts spread from a few to a few dozen.
- **Signature motions.** loop, bounce and spiral each have one exact trajectory, shown in
  `signature_appearances` distinct appearances (fewer than natural-motion filtering's 5 distinct sources):
  one of them is a duplicated source (the motion is seen many times), the others single clips. Asking
  for the motion word with another appearance tests motion memorization.
- **Prompt groups**: as version 1 plus ``unconditional`` (the empty prompt).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from itertools import zip_longest

import numpy as np

from ..features.motion import phi, window_descriptors
from ..metrics.motion import ofs_k_windows
from .clips import DIRECTIONS, SIGNATURE_MOTIONS, SIZE_WORDS, ClipSpec, Prop, caption_of, trajectory
from .plan import (
    MOVING,
    Source,
    WorldSize,
    _interleave,
    _motion_part,
    _random_spec,
    _u,
    _video_keys,
    appearances_and_motions,
    assign_ids,
    planted_prompts,
    prompt_record,
)

FORMAT_V2 = "diffmem-world/2"
# caption tags of duplicated sources: words no other caption uses
TAGS = ("museum archive", "vintage postcard", "press photo", "film reel", "travel poster", "stock footage",
        "album cover", "royal gallery", "harbor festival", "winter catalog", "golden edition", "desert journal")
_SCALE = {"small": (0.22, 0.26), "": (0.31, 0.35), "big": (0.43, 0.48)}  # sprite long side per size word
_SIGNATURE_SCALE = 0.34
# Signature paths slow enough for optical flow to follow at the model's 8 fps and 32 px, so a copy of the
# motion in another appearance is found by the motion audit (OFS-k >= tau_m 0.9). Measured on this world's
# three appearances per signature (DIS flow, first second at 32 px vs the 64 px training clip): the v1
# defaults gave loop 0.88-0.97 and bounce 0.20-0.45 (hops of 0.35 frames x 2 move 18 px per step at flow
# resolution, beyond DIS's reach); these give loop 0.91-0.98 and bounce 0.94-0.97.
_SIGNATURE_PATH = {"loop": lambda p: {**p, "width": round(0.7 * p["width"], 4), "height": round(0.7 * p["height"], 4)},
                   "bounce": lambda p: {**p, "height": 0.25, "bounces": 1.0}}


@dataclass(frozen=True)
class WorldSizeV2(WorldSize):
    """How big a version-2 world is: `WorldSize`'s counts, plus what version 2 adds. The first
    len(SIGNATURE_MOTIONS) duplicated videos carry the signature motions."""

    signature_appearances: int = 4
    n_props: int = 8
    texture: str = "balanced"  # backgrounds of one mean colour and contrast (assets.load_texture)
    path_variants: int = 3
    # bulk clips of each signature motion on other trajectories (`variant_paths` of them, each shared by
    # many distinct clips): the motion word then names a kind of motion, as "moves right" does, of which
    # the signature trajectory is the one most often seen (signature_variants)
    signature_variants: int = 0
    variant_paths: int = 2
    version: int = 2


def _attributes(key: tuple) -> tuple:
    return ("", *SIZE_WORDS) if key[0] is not None else ("",)


def _props(rng, n: int) -> tuple:
    out = []
    for _ in range(n):
        color = [1.0, _u(rng, 0.0, 1.0), 0.0]  # vivid: one channel full, one off, one anywhere
        color = [color[i] for i in rng.permutation(3)]
        out.append(Prop(str(rng.choice(("disc", "square", "diamond"))), _u(rng, 0.05, 0.95), _u(rng, 0.05, 0.95),
                        _u(rng, 0.035, 0.06), tuple(color)))
    return tuple(out)


def _paths(rng, cfg) -> dict:
    """(motion, caption direction) -> the shared trajectories (direction, params without scale) of that motion."""
    out = {}
    for m in MOVING:
        for d in (DIRECTIONS[m] if m == "linear" else ("",)):
            specs = [_random_spec(rng, ("cat", cfg.backgrounds[0], m, d), cfg) for _ in range(cfg.path_variants)]
            out[(m, d)] = [(s.direction, {k: v for k, v in s.params if k != "scale"}) for s in specs]
    return out


def _spec(rng, src: Source, cfg, paths: dict, signature: dict):
    """The clip of a source: its free draws, then the shared path (common motions) or the signature
    trajectory, the size word's scale, and props."""
    spec = _random_spec(rng, src.key, cfg)
    params = dict(spec.params)
    direction = spec.direction
    motion = spec.motion
    if motion in SIGNATURE_MOTIONS:
        direction, params = signature[motion]
        params = {**params, "scale": _SIGNATURE_SCALE}
    elif (motion, src.key[3]) in paths:
        variants = paths[(motion, src.key[3])]
        direction, path = variants[int(rng.integers(len(variants)))]
        params = {**path, "scale": params["scale"]}
    if src.key[0] is not None and motion not in SIGNATURE_MOTIONS:
        lo, hi = _SCALE[src.attribute]
        k = 0.9 if motion in ("zoom_in", "zoom_out") else 1.0  # zooms grow to 1.3-1.6 times this
        params["scale"] = round(_u(rng, lo, hi) * k, 4)
    return replace(spec, direction=direction, params=tuple(params.items()), props=_props(rng, cfg.n_props),
                   texture=cfg.texture)


def plan_v2(seed: int, cfg: WorldSizeV2):
    rng = np.random.default_rng(seed)
    paths = _paths(rng, cfg)
    signature = {}
    for m in SIGNATURE_MOTIONS:
        s = _random_spec(rng, ("cat", cfg.backgrounds[0], m, ""), cfg)
        params = {k: v for k, v in s.params if k != "scale"}
        signature[m] = (s.direction, _SIGNATURE_PATH.get(m, dict)(params))
    pool = _interleave(_video_keys(cfg), rng)
    moving = [k for k in pool if k[0] is not None and k[2] in MOVING]
    reserved = moving[:3 * cfg.n_novel]  # candidates for novel prompts: no clip of these, in any size word
    taken = set(reserved)
    tags = [TAGS[i] for i in rng.permutation(len(TAGS))]
    if len(cfg.video_dup_counts) + len(cfg.image_dup_counts) > len(tags):
        raise ValueError(f"world size {cfg.name!r} has more duplicated sources than caption tags ({len(tags)})")
    sources: list[Source] = []

    def take(pred) -> tuple:
        for k in pool:
            if k not in taken and pred(k):
                taken.add(k)
                return k
        raise ValueError(f"world size {cfg.name!r} asks for more distinct captions than its vocabulary has")

    # duplicated videos; the first ones carry the signature motions, shown in further appearances
    apps = [(s, b) for s in cfg.sprites for b in cfg.backgrounds]
    for j, count in enumerate(cfg.video_dup_counts):
        if j < len(SIGNATURE_MOTIONS):
            m = SIGNATURE_MOTIONS[j]
            chosen: list = []
            for i in rng.permutation(len(apps)):  # appearances that share neither sprite nor background
                s, b = apps[i]
                if all(s != c[0] and b != c[1] for c in chosen):
                    chosen.append((s, b))
                if len(chosen) == cfg.signature_appearances:
                    break
            if len(chosen) < cfg.signature_appearances:
                raise ValueError(f"world size {cfg.name!r}: {cfg.signature_appearances} signature appearances need "
                                 "that many sprites and backgrounds")
            sources.append(Source((*chosen[0], m, ""), "duplicated", count, tag=tags.pop()))
            sources.extend(Source((s, b, m, ""), "signature", 1) for s, b in chosen[1:])
        else:
            key = take(lambda k: k[0] is not None and k[2] in MOVING)
            sources.append(Source(key, "duplicated", count, attribute=str(rng.choice(("", *SIZE_WORDS))),
                                  tag=tags.pop()))
    for count in cfg.caption_dup_counts:
        key = take(lambda k: k[0] is not None and k[2] in MOVING)
        sources.extend(Source(key, "caption_duplicated", 1) for _ in range(count))
    # unique videos: every caption (key x size word) once, first covering every part so novel prompts
    # are recognisable; only when there are more clips than captions do captions repeat
    full = [(k, a) for k in pool if k not in taken for a in _attributes(k)]
    covered = {p for s in sources for p in (s.key[0], s.key[1], _motion_part(s.key))}
    uniques, rest = [], []
    for k, a in full:
        parts = {k[0], k[1], _motion_part(k)} - {None}
        if len(uniques) < cfg.n_unique_videos and not parts <= covered:
            uniques.append((k, a))
            covered |= parts
        else:
            rest.append((k, a))
    by_motion = defaultdict(list)  # motions take turns, so rare motions are not crowded out by pans and lines
    for i in rng.permutation(len(rest)):
        by_motion[rest[i][0][2]].append(rest[i])
    rest = [x for batch in zip_longest(*by_motion.values()) for x in batch if x is not None]
    uniques += rest[:cfg.n_unique_videos - len(uniques)]
    uniques += [rest[i % len(rest)] for i in range(cfg.n_unique_videos - len(uniques))]
    sources.extend(Source(k, "unique", 1, attribute=a) for k, a in uniques)
    # pictures
    img = [((s, b, "image", ""), a) for s in cfg.sprites for b in cfg.backgrounds for a in ("", *SIZE_WORDS)]
    img = [img[i] for i in rng.permutation(len(img))]
    for j, count in enumerate(cfg.image_dup_counts):
        k, a = img[j]
        sources.append(Source(k, "duplicated", count, attribute=a, tag=tags.pop()))
    n_dup = len(cfg.image_dup_counts)
    for j in range(cfg.n_unique_images):
        k, a = img[n_dup + j % (len(img) - n_dup)]
        sources.append(Source(k, "unique", 1, attribute=a))
    for src in sources:
        src.spec = _spec(rng, src, cfg, paths, signature)
    assign_ids(sources, rng)
    return sources, reserved, rng


def prompts_v2(sources: list[Source], reserved: list[tuple], rng, cfg: WorldSizeV2) -> list[dict]:
    """Evaluation prompts; the groups of version 1 plus ``unconditional``. Prompts name no size word and
    no tag unless they are a training caption (duplicated groups)."""
    video = [s for s in sources if s.kind == "video"]
    train_keys = {s.key for s in sources}
    rec = prompt_record
    out = planted_prompts(sources, reserved, cfg)
    # motion memorization: the signature motion's word with an appearance B seen in training that shares
    # neither sprite nor background with any appearance the signature trajectory was shown in
    apps, motion_sources = appearances_and_motions(video)
    commons = sorted((m for m in motion_sources if m[0] in MOVING), key=lambda m: (-motion_sources[m], m))
    used_apps: set = set()
    for sig in SIGNATURE_MOTIONS:
        shown = [s for s in video if s.key[2] == sig]
        if not shown:
            continue
        ids = sorted(i for s in shown for i in s.ids)
        cands = sorted(k for k in apps if all(k[0] != s.key[0] and k[1] != s.key[1] for s in shown))
        fresh = [k for k in cands if k not in used_apps]
        cands = fresh if len(fresh) >= cfg.n_motion_prompts else cands
        picks = [cands[i] for i in rng.permutation(len(cands))[:cfg.n_motion_prompts]]
        used_apps.update(picks)
        for b_sprite, b_bg in picks:
            extra = {"appearance_ids": sorted(apps[(b_sprite, b_bg)]), "signature_source_ids": ids}
            out.append(rec(caption_of(b_sprite, b_bg, sig), "motion_memorization", ids, (b_sprite, b_bg, sig, ""),
                           role="memorized", **extra))
            free = [m for m in commons if (b_sprite, b_bg, *m) not in train_keys]
            ck = (b_sprite, b_bg, *(free or commons)[0])
            c_ids = [i for x in video if x.key == ck for i in x.ids]
            out.append(rec(caption_of(*ck), "motion_memorization", c_ids, ck, role="control", **extra))
    out.append({"prompt": "", "group": "unconditional", "train_ids": [], "sprite": None, "background": None,
                "motion": None, "direction": ""})
    return out


_VARIANT_SIMILARITY = 0.5  # most a variant path may resemble the signature's


def path_similarity(a: ClipSpec, b: ClipSpec, frames: int, k: int = 4) -> float:
    """OFS-k (the motion audit's score: `metrics.motion.ofs_k_windows` of `features.motion` windows) of
    the sprite's true motion over the first `frames` frames of clip a and of clip b, each frame's motion
    one pooled cell (grid 1): the trajectories alone, without camera, texture or the sprite's shape."""
    def windows(spec):
        tr = trajectory(spec)
        v = np.stack([np.diff(tr.x[:frames]), np.diff(tr.y[:frames])], 1)
        return window_descriptors(phi(v[:, None, None, :]), k)
    return ofs_k_windows(windows(a), windows(b)).score


def variant_sources(sources: list[Source], prompts: list[dict], seed: int, cfg: WorldSizeV2) -> list[Source]:
    """`cfg.signature_variants` more clips of each signature motion, on `cfg.variant_paths` other
    trajectories (each unlike the signature's over the first second, the part the large
    world's model makes: `path_similarity` below 0.5), one per appearance, in
    appearances that are neither one of the signature's nor a motion-memorization prompt's (so those
    prompts stay captions no training clip has). With them the motion word names a kind of motion learned
    from many appearances, of which the signature trajectory is the most repeated one: asked for with a
    new appearance, a model that memorized it reproduces that trajectory, as in the video paper. They
    are drawn from their own generator after the rest of the world and prompts, so everything else
    stays byte-identical; their ids follow the other videos'."""
    if not cfg.signature_variants:
        return []
    rng = np.random.default_rng([seed, 2])
    captions = {s.caption for s in sources}
    n_vid = sum(len(s.ids) for s in sources if s.kind == "video")
    out: list[Source] = []
    for m in SIGNATURE_MOTIONS:
        shown = [s for s in sources if s.kind == "video" and s.key[2] == m]
        if not shown:
            continue
        sig = shown[0].spec
        paths: list[tuple] = []
        for _ in range(1000):
            if len(paths) == cfg.variant_paths:
                break
            s = _random_spec(rng, ("cat", cfg.backgrounds[0], m, ""), cfg)
            params = _SIGNATURE_PATH.get(m, dict)({k: v for k, v in s.params if k != "scale"})
            cand = replace(sig, direction=s.direction, params=tuple({**params, "scale": _SIGNATURE_SCALE}.items()))
            if path_similarity(cand, sig, int(cfg.fps)) < _VARIANT_SIMILARITY:
                paths.append((s.direction, params))
        if len(paths) < cfg.variant_paths:
            raise ValueError(f"world size {cfg.name!r}: no {cfg.variant_paths} {m} paths unlike the signature's")
        banned = {s.key[:2] for s in shown} | {(p["sprite"], p["background"]) for p in prompts
                                                if p["group"] == "motion_memorization" and p["motion"] == m}
        apps = [(a, b) for a in cfg.sprites for b in cfg.backgrounds if (a, b) not in banned]
        made = 0
        for j in rng.permutation(len(apps)):
            if made == cfg.signature_variants:
                break
            attr = str(rng.choice(("", *SIZE_WORDS)))
            src = Source((*apps[j], m, ""), "unique", 1, attribute=attr)
            if src.caption in captions:
                continue
            direction, params = paths[made % len(paths)]
            lo, hi = _SCALE[attr]
            spec = _random_spec(rng, src.key, cfg)
            src.spec = replace(spec, direction=direction, params=tuple({**params, "scale": round(_u(rng, lo, hi), 4)}.items()),
                               props=_props(rng, cfg.n_props), texture=cfg.texture)
            src.ids.append(f"vid{n_vid + len(out):04d}")
            src.name = f"src{len(sources) + len(out):04d}"
            captions.add(src.caption)
            out.append(src)
            made += 1
        if made < cfg.signature_variants:
            raise ValueError(f"world size {cfg.name!r}: only {made} appearances left for {m} variants")
    return out
