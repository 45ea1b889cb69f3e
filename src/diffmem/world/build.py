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
``large`` is a version-2 world ("diffmem-world/2", planned by `plan_v2`): 64 px, 16 frames, 1481 files in
which duplicates are rare (4.9 %) and prompt-specific; see `plan_v2` for what differs. What follows
describes version 1; the planning of both is in `plan.py` / `plan_v2.py`, this module renders and writes.

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
import os
import shutil
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import BadInputError
from ..io.atomic import atomic_output
from ..io.image import write_image
from ..io.lock import LOCK_NAME, writes_folder
from ..io.results import environment, write_json, write_parquet, write_text
from ..io.video import write_video
from .assets import BACKGROUNDS, SPRITES
from .clips import MOTIONS, SIGNATURE_MOTIONS, ClipSpec, render_clip
from .plan import Source, WorldSize, plan_v1, prompts_v1
from .plan_v2 import FORMAT_V2, WorldSizeV2, plan_v2, prompts_v2, variant_sources

FORMAT = "diffmem-world/1"
_MARKER = ".diffmem-world.json"


SIZES = {
    "tiny": WorldSize("tiny", 32, 8, 8.0, SPRITES[:6], BACKGROUNDS[:5], (6, 4, 3), (3,), (3, 3), 12, 4, 4, 1),
    "small": WorldSize("small", 64, 16, 8.0, SPRITES[:6], BACKGROUNDS[:5], (24, 24, 12, 12, 6, 6, 3, 3),
                       (12, 4), (8, 8, 4, 4), 100, 24, 16, 2),
    "medium": WorldSize("medium", 96, 16, 8.0, SPRITES, BACKGROUNDS, (50, 50, 25, 25, 10, 10, 5, 5, 2, 2),
                        (25, 10, 5), (16, 16, 8, 8, 4, 4), 640, 44, 48, 3),
    # version 2: 1481 files, 73 of them (4.9 %) copies of 7 duplicated sources (plan_v2)
    "large": WorldSizeV2("large", 64, 16, 8.0, SPRITES, BACKGROUNDS, (24, 16, 12, 8, 3), (6, 4), (3, 3, 3, 3),
                         1250, 140, 24, 4),
}


def _format(cfg) -> str:
    return FORMAT_V2 if getattr(cfg, "version", 1) == 2 else FORMAT


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


# ---- writing ------------------------------------------------------------------------------------

def _check_out(out: Path, seed: int, size: str, force: bool, variants: int = 0) -> None:
    fmt = _format(SIZES[size])
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
        if (m.get("seed"), m.get("size"), m.get("format"), m.get("signature_variants", 0)) == (seed, size, fmt, variants) \
                or force:
            return
        extra = f", {m['signature_variants']} signature variants" if m.get("signature_variants") else ""
        raise BadInputError(out, f"holds a world made with seed {m.get('seed')}, size {m.get('size')!r}{extra}; "
                                 f"use another folder or --force to replace it")
    if any(p.name != LOCK_NAME for p in out.iterdir()) and not force:
        raise BadInputError(out, "is not empty and is not a diffmem world; use an empty folder or --force")


def _file_path(src: Source, item_id: str) -> str:
    return f"videos/{item_id}.mp4" if src.kind == "video" else f"images/{item_id}.png"


def _write_source(out: Path, src: Source) -> None:
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
def make_world(out, *, seed: int = 0, size: str = "small", force: bool = False, progress: bool = False,
               signature_variants: int | None = None) -> WorldSummary:
    """Build (or finish, or confirm) the embedded world in folder `out`. See the module docstring.
    signature_variants: a version-2 size's `WorldSizeV2.signature_variants` instead of its own (None)."""
    t0 = time.perf_counter()
    if size not in SIZES:
        raise ValueError(f"unknown world size {size!r}; choose from {', '.join(SIZES)}")
    seed = int(seed)
    cfg = SIZES[size]
    v2 = getattr(cfg, "version", 1) == 2
    if signature_variants is not None:
        if not v2:
            raise ValueError(f"signature variants need a version-2 world size (large), not {size!r}")
        if signature_variants < 0:
            raise ValueError(f"signature variants must be 0 or more, got {signature_variants}")
        cfg = replace(cfg, signature_variants=int(signature_variants))
    variants = getattr(cfg, "signature_variants", 0)
    out = Path(out)
    _check_out(out, seed, size, force, variants)
    out.mkdir(parents=True, exist_ok=True)
    marker = {"format": _format(cfg), "seed": seed, "size": size}
    write_json(out / _MARKER, {**marker, "signature_variants": variants} if variants else marker)
    plan, prompts_of = (plan_v2, prompts_v2) if v2 else (plan_v1, prompts_v1)
    sources, reserved, rng = plan(seed, cfg)
    prompts = prompts_of(sources, reserved, rng, cfg)
    if v2:
        sources += variant_sources(sources, prompts, seed, cfg)

    # sources are rendered and encoded two at a time (x264 and the renderer's OpenCV calls release the
    # interpreter lock); each writes its own files, so the bytes do not depend on the order
    with ThreadPoolExecutor(min(2, os.cpu_count() or 1), thread_name_prefix="diffmem-world") as pool:
        for _ in tqdm(pool.map(lambda src: _write_source(out, src), sources), total=len(sources), desc="world",
                      unit="clip", disable=not progress):
            pass
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
    def parts(s: Source) -> dict:
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
        "format": _format(cfg),
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
        "signature_motions": {s.spec.motion: {"source": s.name, "caption": s.caption, "ids": sorted(s.ids), **parts(s),
                                              **_appearances(sources, s)}
                              for s in dup if s.spec.motion in SIGNATURE_MOTIONS},
        "prompt_counts": dict(Counter(p["group"] for p in prompts)),
    }


def _appearances(sources, dup) -> dict:
    """Version 2: every source that shows the signature trajectory of `dup` (itself included)."""
    shown = [s for s in sources if s.role == "signature" and s.spec.motion == dup.spec.motion]
    if not shown:
        return {}
    shown = [dup, *shown]
    return {"appearance_sources": [s.name for s in shown], "all_ids": sorted(i for s in shown for i in s.ids),
            "appearances": [[s.spec.sprite, s.spec.background] for s in shown]}


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
