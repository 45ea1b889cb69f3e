"""Building the embedded world: a captioned video corpus with deliberate duplicates, built offline from real imagery.

`make_world(out, seed=0, size="small")` writes into `out`:

- ``videos/<id>.mp4`` (H.264, ``size`` px square, e.g. 64x64, 16 frames at 8 fps for "small") and
  ``images/<id>.png`` (still images: one-frame clips);
- ``train.parquet``: the training set, columns ``id, path, caption, kind`` (path relative to `out`);
  load it with ``diffmem.data.manifest.load_manifest(out / "train.parquet")``;
- ``ground_truth.json``: what the world is made of (see below);
- ``prompts.jsonl``: evaluation prompts, one JSON object per line with ``prompt, group, train_ids``
  (+ ``sprite, background, motion, direction``, and ``role`` in the motion group);
- ``summary.json``: counts, time taken, package versions.

Sizes (`SIZES`): ``tiny`` 32 px, 8 frames, 38 files (for tests); ``small`` (default) 64 px, 16 frames at
8 fps (2 s), 254 files, 6 sprites x 5 backgrounds; ``medium`` 96 px, 16 frames, 964 files, 8 sprites x 6
backgrounds.

Content. Sprites (LFW faces, sklearn digits, crops of the cat, the coffee cup, the rocket, the astronaut,
coins, the colour wheel from scikit-image) move over textured backgrounds (bricks, grass, gravel,
craters, stars, cells) with one motion each: linear (right/left/up/down), circle, zigzag, zoom in/out,
static, camera pan (sprite fixed to the background, or no sprite), and three rare *signature* motions
(loop, bounce, spiral). Captions name sprite, background and motion from a small regular vocabulary:
"a face zigzags across gravel", "the camera pans right over grass", "a picture of a cup on stars".
See `world_clips` for the exact motions and `ClipSpec` to re-render any item.

Structure (each distinct content is a *source*; copies of a source are byte-identical files):

- duplicated sources: a few videos copied many times (e.g. 24, 24, 12, 12, 6, 6, 3, 3 copies in "small")
  and a few images; every copy has the same caption, and no other item has that caption;
- caption-only duplicates: a few captions each given to several *distinct* clips (another sprite
  instance, start position, trajectory parameters and texture crop);
- everything else is a unique clip with its own caption (captions only repeat, by necessity, when a
  size asks for more unique clips than the vocabulary has captions; `shared_captions` lists every
  caption that more than one distinct source carries);
- each signature motion is used by exactly one source, a duplicated one: groups 0, 2, 4 (by
  decreasing copy count) move with loop, bounce, spiral.

Prompt groups in ``prompts.jsonl``:

- ``duplicated_video`` / ``duplicated_image``: the caption of each duplicated source; train_ids = its copies;
- ``duplicated_caption``: each caption shared by distinct clips; train_ids = those clips;
- ``novel``: a sprite, a background and a motion that all appear in training, never together; train_ids = [];
- ``motion_memorization``: for the detection of "same appearance, different memorized motion". For each
  signature source (sprite A on background A, motion M used by no other training clip), appearances
  (sprite B, background B) with B != A in both parts that do occur in training, with two prompts each:
  role ``memorized``: "B does M" (train_ids = the signature source's copies: a model that memorized M
  reproduces that trajectory in appearance B, so motion similarity flags it while content similarity does
  not), and role ``control``: "B does C" with the most widely shared moving motion C not captioned for B
  in training (train_ids = []; C is shared by many distinct clips, so natural motion filtering should
  discount it; only if B already has every such motion, as can happen in "medium", is C a training
  caption, and train_ids lists its clips). ``appearance_ids`` lists the training clips that show B.

``ground_truth.json``: ``seed``, ``size``, ``config``, ``vocabulary``; ``items`` (id, path, kind, caption,
source, role = duplicated | caption_duplicated | unique, copies, sprite, background, motion, direction,
and the full ``spec``: `item_specs(out)` turns them back into `ClipSpec`s); ``duplicate_groups`` (source,
kind, caption, count, ids, signature_motion); ``caption_groups`` (caption, count, sources, ids);
``shared_captions`` (caption -> ids, for every caption on more than one distinct source);
``duplicated_video_captions``, ``duplicated_image_captions``, ``caption_duplicated_captions``;
``signature_motions`` (motion -> its source, caption, ids); ``prompt_counts``.

Determinism: the same seed and size give byte-identical ``train.parquet``, ``ground_truth.json``,
``prompts.jsonl`` and media files on one machine (`write_video` fixes timestamps and turns x264's
mbtree off, which otherwise changed the encoded pixels of small clips from run to run). Other
encoder builds may encode differently; `render_clip` of the stored specs is exact everywhere.

Safety: every file is written atomically; `out` must be empty, missing, or a world made with the same
seed and size (then the run resumes / is idempotent); `force=True` overwrites anything else.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import BadInputError
from ..io.atomic import atomic_output
from ..io.image import write_image
from ..io.lock import LOCK_NAME, writes_folder
from ..io.results import environment, write_json, write_parquet, write_text
from ..io.video import write_video
from .assets import BACKGROUNDS, SPRITES, n_instances
from .clips import COMMON_MOTIONS, DIRECTIONS, MOTIONS, SIGNATURE_MOTIONS, ClipSpec, caption_of, render_clip

FORMAT = "diffmem-world/1"
_MARKER = ".diffmem-world.json"
_MOVING = ("linear", "circle", "zigzag", "zoom_in", "zoom_out")  # motions of duplicated / novel clips


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


SIZES = {
    "tiny": WorldSize("tiny", 32, 8, 8.0, SPRITES[:6], BACKGROUNDS[:5], (6, 4, 3), (3,), (3, 3), 12, 4, 4, 1),
    "small": WorldSize("small", 64, 16, 8.0, SPRITES[:6], BACKGROUNDS[:5], (24, 24, 12, 12, 6, 6, 3, 3),
                       (12, 4), (8, 8, 4, 4), 100, 24, 16, 2),
    "medium": WorldSize("medium", 96, 16, 8.0, SPRITES, BACKGROUNDS, (50, 50, 25, 25, 10, 10, 5, 5, 2, 2),
                        (25, 10, 5), (16, 16, 8, 8, 4, 4), 640, 44, 48, 3),
}


@dataclass
class WorldSummary:
    out: Path
    seed: int
    size: str
    n_items: int
    n_videos: int
    n_images: int
    n_sources: int  # distinct contents
    n_duplicate_groups: int
    n_duplicated_files: int  # files that belong to a duplicate group (all copies)
    n_caption_groups: int
    n_captions: int  # distinct captions
    n_prompts: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d

    def format(self) -> str:
        prompts = ", ".join(f"{k} {v}" for k, v in self.n_prompts.items())
        return (f"world {self.out} (seed {self.seed}, size {self.size})\n"
                f"  items       {self.n_items} ({self.n_videos} videos, {self.n_images} images; "
                f"{self.n_sources} distinct contents)\n"
                f"  duplicates  {self.n_duplicate_groups} groups, {self.n_duplicated_files} files\n"
                f"  captions    {self.n_captions} distinct; {self.n_caption_groups} shared by distinct clips on purpose\n"
                f"  prompts     {prompts}\n"
                f"  time        {self.seconds:.1f} s")


# ---- planning: which sources exist, their captions, roles and copy counts -------------------------

@dataclass
class _Source:
    key: tuple  # (sprite, background, motion, caption direction) or (sprite, background, "image", "")
    role: str  # duplicated | caption_duplicated | unique
    copies: int
    spec: ClipSpec | None = None
    name: str = ""
    ids: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "image" if self.key[2] == "image" else "video"

    @property
    def caption(self) -> str:
        s, b, m, d = self.key
        return caption_of(s, b, "static" if m == "image" else m, d, image=m == "image")


def _video_keys(cfg: WorldSize) -> list[tuple]:
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


def _random_spec(rng: np.random.Generator, key: tuple, cfg: WorldSize) -> ClipSpec:
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


def _plan(seed: int, cfg: WorldSize):
    rng = np.random.default_rng(seed)
    pool = _interleave(_video_keys(cfg), rng)
    moving = [k for k in pool if k[0] is not None and k[2] in _MOVING]
    n_reserve = 3 * cfg.n_novel  # candidates for novel prompts, kept out of training
    reserved = moving[:n_reserve]
    taken = set(reserved)
    sources: list[_Source] = []

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
            key = take(lambda k: k[0] is not None and k[2] in _MOVING)
        sources.append(_Source(key, "duplicated", count))
    for count in cfg.caption_dup_counts:
        key = take(lambda k: k[0] is not None and k[2] in _MOVING)
        sources.extend(_Source(key, "caption_duplicated", 1) for _ in range(count))
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
    sources.extend(_Source(k, "unique", 1) for k in uniques)
    # images
    img_keys = [(s, b, "image", "") for s in cfg.sprites for b in cfg.backgrounds]
    rng.shuffle(img_keys)
    for j, count in enumerate(cfg.image_dup_counts):
        sources.append(_Source(img_keys[j % len(img_keys)], "duplicated", count))
    n_dup = len(cfg.image_dup_counts)
    for j in range(cfg.n_unique_images):
        sources.append(_Source(img_keys[n_dup + j % (len(img_keys) - n_dup)], "unique", 1))
    for src in sources:
        src.spec = _random_spec(rng, src.key, cfg)
    # ids: shuffle all files so copies are not adjacent; ids carry no hint of duplication
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
    return sources, reserved, rng


def _prompts(sources: list[_Source], reserved: list[tuple], rng, cfg: WorldSize):
    train_keys = {s.key for s in sources}
    video = [s for s in sources if s.kind == "video"]
    seen_parts = {s.key[0] for s in video} | {s.key[1] for s in video} | {_motion_part(s.key) for s in video}

    def rec(prompt, group, train_ids, key, **extra):
        s, b, m, d = key
        return {"prompt": prompt, "group": group, "train_ids": sorted(train_ids), "sprite": s, "background": b,
                "motion": "static" if m == "image" else m, "direction": d, **extra}

    out = []
    for s in sources:
        if s.role == "duplicated":
            out.append(rec(s.caption, f"duplicated_{s.kind}", s.ids, s.key))
    by_caption = defaultdict(list)
    for s in sources:
        if s.role == "caption_duplicated":
            by_caption[s.key].append(s)
    for key, group in by_caption.items():
        out.append(rec(group[0].caption, "duplicated_caption", [i for g in group for i in g.ids], key))
    novel = [k for k in reserved if k not in train_keys and {k[0], k[1], _motion_part(k)} <= seen_parts]
    for k in novel[:cfg.n_novel]:
        out.append(rec(caption_of(*k), "novel", [], k))
    # motion memorization: appearance B (seen in training) x signature motion of another appearance A
    apps = defaultdict(list)
    for s in video:
        if s.key[0] is not None:
            apps[(s.key[0], s.key[1])].extend(s.ids)
    motion_sources = Counter(_motion_part(s.key) for s in video)  # distinct sources per motion
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
            commons = sorted((m for m in motion_sources if m[0] in _MOVING), key=lambda m: (-motion_sources[m], m))
            free = [m for m in commons if (b_sprite, b_bg, *m) not in train_keys and (b_sprite, b_bg, *m) not in used_novel]
            m = (free or commons)[0]
            ck = (b_sprite, b_bg, *m)
            ids = [i for x in video if x.key == ck for i in x.ids]
            out.append(rec(caption_of(*ck), "motion_memorization", ids, ck, role="control", **extra))
    return out


# ---- writing ------------------------------------------------------------------------------------

def _check_out(out: Path, seed: int, size: str, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise BadInputError(out, "exists and is not a folder")
    marker = out / _MARKER
    if marker.exists():
        try:
            m = json.loads(marker.read_text())
        except (OSError, ValueError):
            m = {}
        if (m.get("seed"), m.get("size"), m.get("format")) == (seed, size, FORMAT) or force:
            return
        raise BadInputError(out, f"holds a world made with seed {m.get('seed')}, size {m.get('size')!r}; "
                                 f"use another folder or --force to replace it")
    if any(p.name != LOCK_NAME for p in out.iterdir()) and not force:
        raise BadInputError(out, "is not empty and is not a diffmem world; use an empty folder or --force")


def _file_path(src: _Source, item_id: str) -> str:
    return f"videos/{item_id}.mp4" if src.kind == "video" else f"images/{item_id}.png"


def _write_source(out: Path, src: _Source) -> None:
    paths = [out / _file_path(src, i) for i in src.ids]
    done = [p for p in paths if p.exists()]  # complete files (writes are atomic) of an earlier run
    if len(done) == len(paths):
        return
    if done:
        first = done[0]
    else:
        first = paths[0]
        frames = render_clip(src.spec)
        if src.kind == "image":
            write_image(first, frames[0])
        else:
            write_video(first, frames, fps=src.spec.fps)
    for p in paths:  # copies are byte-identical
        if not p.exists():
            with atomic_output(p) as tmp:
                shutil.copyfile(first, tmp)


@writes_folder("world make")
def make_world(out, *, seed: int = 0, size: str = "small", force: bool = False, progress: bool = False) -> WorldSummary:
    """Build (or finish, or confirm) the embedded world in folder `out`. See the module docstring."""
    t0 = time.perf_counter()
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}; choose from {', '.join(SIZES)}")
    seed = int(seed)
    cfg = SIZES[size]
    out = Path(out)
    _check_out(out, seed, size, force)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / _MARKER, {"format": FORMAT, "seed": seed, "size": size})
    sources, reserved, rng = _plan(seed, cfg)
    prompts = _prompts(sources, reserved, rng, cfg)

    for src in tqdm(sources, desc="world", unit="clip", disable=not progress):
        _write_source(out, src)
    planned = {_file_path(s, i) for s in sources for i in s.ids}
    for sub, pattern in (("videos", "vid*.mp4"), ("images", "img*.png")):  # files of a replaced world
        for f in (out / sub).glob(pattern) if (out / sub).is_dir() else ():
            if f"{sub}/{f.name}" not in planned:
                f.unlink()

    items = sorted(((i, s) for s in sources for i in s.ids), key=lambda x: x[0])
    write_parquet(out / "train.parquet", [{"id": i, "path": _file_path(s, i), "caption": s.caption, "kind": s.kind}
                                          for i, s in items])
    gt = _ground_truth(seed, cfg, sources, items, prompts)
    write_json(out / "ground_truth.json", gt)
    write_text(out / "prompts.jsonl", "".join(json.dumps(p, sort_keys=False) + "\n" for p in prompts))
    summary = WorldSummary(
        out=out, seed=seed, size=size, n_items=len(items),
        n_videos=sum(s.kind == "video" for _, s in items), n_images=sum(s.kind == "image" for _, s in items),
        n_sources=len(sources), n_duplicate_groups=len(gt["duplicate_groups"]),
        n_duplicated_files=sum(g["count"] for g in gt["duplicate_groups"]),
        n_caption_groups=len(gt["caption_groups"]), n_captions=len({s.caption for s in sources}),
        n_prompts=dict(Counter(p["group"] for p in prompts)), seconds=round(time.perf_counter() - t0, 3))
    write_json(out / "summary.json", {**summary.as_dict(), "config": asdict(cfg), "environment": environment()})
    return summary


def _ground_truth(seed, cfg, sources, items, prompts) -> dict:
    def parts(s: _Source) -> dict:
        return {"sprite": s.spec.sprite, "background": s.spec.background, "motion": s.spec.motion,
                "direction": s.spec.direction}

    by_caption = defaultdict(list)
    for s in sources:
        by_caption[s.caption].append(s)
    dup = [s for s in sources if s.role == "duplicated"]
    cap_groups = defaultdict(list)
    for s in sources:
        if s.role == "caption_duplicated":
            cap_groups[s.caption].append(s)
    return {
        "format": FORMAT,
        "seed": seed,
        "size": cfg.name,
        "config": asdict(cfg),
        "vocabulary": {"sprites": list(cfg.sprites), "backgrounds": list(cfg.backgrounds),
                       "motions": list(MOTIONS), "signature_motions": list(SIGNATURE_MOTIONS)},
        "items": [{"id": i, "path": _file_path(s, i), "kind": s.kind, "caption": s.caption, "source": s.name,
                   "role": s.role, "copies": s.copies, **parts(s), "spec": s.spec.to_dict()} for i, s in items],
        "duplicate_groups": [{"source": s.name, "kind": s.kind, "caption": s.caption, "count": s.copies,
                              "ids": sorted(s.ids), "signature_motion": s.spec.motion in SIGNATURE_MOTIONS,
                              **parts(s)} for s in dup],
        "caption_groups": [{"caption": c, "count": len(g), "sources": [s.name for s in g],
                            "ids": sorted(i for s in g for i in s.ids)} for c, g in cap_groups.items()],
        "shared_captions": {c: sorted(i for s in g for i in s.ids) for c, g in sorted(by_caption.items()) if len(g) > 1},
        "duplicated_video_captions": [s.caption for s in dup if s.kind == "video"],
        "duplicated_image_captions": [s.caption for s in dup if s.kind == "image"],
        "caption_duplicated_captions": list(cap_groups),
        "signature_motions": {s.spec.motion: {"source": s.name, "caption": s.caption, "ids": sorted(s.ids), **parts(s)}
                              for s in dup if s.spec.motion in SIGNATURE_MOTIONS},
        "prompt_counts": dict(Counter(p["group"] for p in prompts)),
    }


# ---- reading a world back -------------------------------------------------------------------------

def load_ground_truth(out) -> dict:
    """The ground truth of the world in `out`."""
    path = Path(out) / "ground_truth.json"
    if not path.exists():
        raise BadInputError(path, "missing: not a diffmem world (make one with `diffmem world make`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise BadInputError(path, f"not valid JSON ({e})") from None


def item_specs(out) -> dict[str, ClipSpec]:
    """id -> ClipSpec of every training item, to re-render it (`render_clip`) or know its motion (`trajectory`)."""
    return {it["id"]: ClipSpec.from_dict(it["spec"]) for it in load_ground_truth(out)["items"]}
