"""A planted-copy corpus for the content audit: training clips of the synthetic world and bundled
pictures; generated items that are edited copies of them (every edit of `diffmem.features.edits`) and
unrelated items (other backgrounds, other pictures, noise). Ground truth: `Corpus.source[gen_id]` is
the training id a copy was made from (absent for unrelated items)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from diffmem.world.clips import ClipSpec, render_clip
from diffmem.features.edits import EDITS, apply_edit
from diffmem.io.image import write_image
from diffmem.io.video import write_video

TRAIN_CLIPS = [
    ClipSpec.make("cat", "grass", "linear", "right", cx=0.5, cy=0.4),
    ClipSpec.make("rocket", "bricks", "circle", "cw"),
    ClipSpec.make("face", "gravel", "zigzag", "left"),
    ClipSpec.make("digit", "grass", "zoom_in"),
    ClipSpec.make("cup", "bricks", "linear", "up", bg_x=0.1, bg_y=0.8),
    ClipSpec.make("astronaut", "gravel", "static", cx=0.35, cy=0.6),
]
UNRELATED_CLIPS = [
    ClipSpec.make("coin", "stars", "circle", "ccw"),
    ClipSpec.make("wheel", "craters", "linear", "down"),
    ClipSpec.make("cat", "cells", "zigzag", "right"),
    ClipSpec.make("face", "stars", "zoom_out"),
]
TRAIN_PICTURES = [("astronaut", (0, 0, 300, 300)), ("coffee", (50, 100, 350, 400)), ("chelsea", (0, 100, 300, 400)),
                  ("rocket", (0, 150, 420, 570)), ("immunohistochemistry", (0, 0, 400, 400)), ("brick", (0, 0, 256, 256))]
UNRELATED_PICTURES = [("camera", (0, 0, 512, 512)), ("coins", (0, 0, 300, 384)), ("hubble_deep_field", (100, 100, 600, 600)),
                      ("retina", (300, 300, 1100, 1100))]


def _picture(name, box, size=64):
    import skimage.data

    im = getattr(skimage.data, name)()
    y0, x0, y1, x1 = box
    im = im[y0:y1, x0:x1]
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return cv2.resize(np.ascontiguousarray(im[..., :3]), (size, size), interpolation=cv2.INTER_AREA)


def _spec(s: ClipSpec) -> ClipSpec:
    from dataclasses import replace

    return replace(s, size=64, n_frames=8)


@dataclass
class Corpus:
    root: Path
    train: Path          # manifest of the training set
    generated: Path      # manifest of the generated set
    source: dict = field(default_factory=dict)   # generated id -> training id it copies
    edit: dict = field(default_factory=dict)     # generated id -> edit name
    unrelated: list = field(default_factory=list)


def make_corpus(root: Path, *, corrupt: bool = True) -> Corpus:
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "gen").mkdir(parents=True, exist_ok=True)
    train_rows, gen_rows = [], []
    media = {}
    for i, s in enumerate(TRAIN_CLIPS):
        arr = render_clip(_spec(s))
        p = root / "train" / f"clip{i}.mp4"
        write_video(p, arr, fps=8)
        media[f"clip{i}"] = arr
        train_rows.append({"id": f"clip{i}", "path": f"train/clip{i}.mp4", "caption": f"a {s.sprite} on {s.background}"})
    for i, (name, box) in enumerate(TRAIN_PICTURES):
        im = _picture(name, box)
        write_image(root / "train" / f"pic{i}.png", im)
        media[f"pic{i}"] = im[None]
        train_rows.append({"id": f"pic{i}", "path": f"train/pic{i}.png", "caption": f"<b>{name}</b> & co"})
    if corrupt:
        (root / "train" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
        train_rows.append({"id": "corrupt-train", "path": "train/corrupt.mp4", "caption": ""})
    c = Corpus(root, root / "train.parquet", root / "generated.parquet")
    ids = list(media)
    for e_i, edit in enumerate(EDITS):
        for j in range(3):  # three copies per edit: two clips and a picture, rotating through the set
            src = ids[(3 * e_i + j) % len(ids)] if j < 2 else f"pic{(e_i + j) % len(TRAIN_PICTURES)}"
            arr = apply_edit(edit, media[src], seed=7 * e_i + j)
            gid = f"{edit}-{j}"
            if arr.shape[0] == 1:
                write_image(root / "gen" / f"{gid}.png", arr[0])
                gen_rows.append({"id": gid, "path": f"gen/{gid}.png", "caption": "<script>alert(1)</script>"})
            else:
                write_video(root / "gen" / f"{gid}.mp4", arr, fps=8)
                gen_rows.append({"id": gid, "path": f"gen/{gid}.mp4", "caption": "copy"})
            c.source[gid], c.edit[gid] = src, edit
    for i, s in enumerate(UNRELATED_CLIPS):
        gid = f"unrelated-clip{i}"
        write_video(root / "gen" / f"{gid}.mp4", render_clip(_spec(s)), fps=8)
        gen_rows.append({"id": gid, "path": f"gen/{gid}.mp4", "caption": ""})
        c.unrelated.append(gid)
    for i, (name, box) in enumerate(UNRELATED_PICTURES):
        gid = f"unrelated-pic{i}"
        write_image(root / "gen" / f"{gid}.png", _picture(name, box))
        gen_rows.append({"id": gid, "path": f"gen/{gid}.png", "caption": ""})
        c.unrelated.append(gid)
    rng = np.random.default_rng(0)
    write_video(root / "gen" / "noise.mp4", rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=8)
    gen_rows.append({"id": "noise", "path": "gen/noise.mp4", "caption": ""})
    c.unrelated.append("noise")
    if corrupt:
        (root / "gen" / "corrupt.mp4").write_bytes(b"garbage" * 50)
        gen_rows.append({"id": "corrupt-gen", "path": "gen/corrupt.mp4", "caption": ""})
    pd.DataFrame(train_rows).to_parquet(c.train)
    pd.DataFrame(gen_rows).to_parquet(c.generated)
    return c


def per_edit_table(items: list[dict], corpus: Corpus) -> dict:
    """Precision and recall per edit: a copy counts as found when flagged with the right training item;
    false positives are the unrelated items flagged (shared by every edit's precision)."""
    by_id = {it["id"]: it for it in items}
    fp = sum(by_id[u]["content_memorized"] for u in corpus.unrelated if u in by_id)
    out = {}
    for edit in EDITS:
        gids = [g for g, e in corpus.edit.items() if e == edit]
        tp = sum(by_id[g]["content_memorized"] and by_id[g]["content_match"]["train_id"] == corpus.source[g] for g in gids)
        flagged = sum(by_id[g]["content_memorized"] for g in gids)
        out[edit] = {"n": len(gids), "tp": tp, "recall": tp / len(gids),
                     "precision": tp / (flagged + fp) if flagged + fp else 1.0,
                     "scores": [round(by_id[g]["content_score"], 3) for g in gids]}
    out["_unrelated"] = {"n": len(corpus.unrelated), "false_positives": fp,
                         "scores": [round(by_id[u]["content_score"], 3) for u in corpus.unrelated]}
    return out
