"""The content index of a training set: frames sampled by timestamp, metadata, resume, extend, skips."""
import numpy as np
import pandas as pd
import pytest

from diffmem.errors import DiffmemError, PolicyMismatchError
from diffmem.index import VectorIndex, build_content_index, open_content_index
from diffmem.index import content as content_mod
from diffmem.io.image import write_image
from diffmem.io.video import write_video
from diffmem.world.clips import ClipSpec, render_clip

SPECS = [ClipSpec.make("cat", "grass", "linear", "right", size=48, n_frames=16),
         ClipSpec.make("rocket", "bricks", "circle", "cw", size=48, n_frames=16),
         ClipSpec.make("digit", "stars", "zoom_in", size=48, n_frames=8)]


def _corpus(root, n_extra_images=0):
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, spec in enumerate(SPECS):
        write_video(root / f"v{i}.mp4", render_clip(spec), fps=8)
        rows.append({"id": f"v{i}", "path": f"v{i}.mp4", "caption": f"clip <{i}>"})
    for j in range(2 + n_extra_images):
        im = render_clip(ClipSpec.make("face", ("gravel", "cells", "craters", "bricks")[j], size=40, n_frames=1))[0]
        write_image(root / f"im{j}.png", im)
        rows.append({"id": f"im{j}", "path": f"im{j}.png", "caption": ""})
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    rows.append({"id": "broken", "path": "broken.mp4", "caption": "bad"})
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    return root / "train.parquet"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    manifest = _corpus(root)
    rep = build_content_index(manifest, root / "INDEX", fps=4.0, progress=False)
    return root, manifest, rep


def test_frames_are_sampled_by_timestamp_and_described(built):
    root, _, rep = built
    idx, desc = open_content_index(root / "INDEX")
    meta = idx.metadata
    counts = meta["item_id"].value_counts().to_dict()
    # 16 frames at 8 fps = 2 s -> 8 samples at 4 fps; 8 frames = 1 s -> 4; images -> 1
    assert counts == {"v0": 8, "v1": 8, "v2": 4, "im0": 1, "im1": 1}
    v0 = meta[meta.item_id == "v0"]
    assert np.allclose(v0.timestamp, np.arange(8) / 4) and list(v0.source_frame) == list(range(0, 16, 2))
    assert list(v0.frame) == list(range(8))
    assert set(meta.caption) == {"clip <0>", "clip <1>", "clip <2>", ""}
    assert rep.added == 5 and [s.id for s in rep.skipped] == ["broken"]
    assert [s["id"] for s in idx.skipped] == ["broken"] and "broken.mp4" in idx.skipped[0]["path"]
    # the stored vector of a frame is the descriptor of that frame
    frames = content_mod.read_item_frames(root / "v0.mp4", 4.0).array
    rows = np.flatnonzero(meta.item_id.to_numpy() == "v0")
    assert np.allclose(idx.vectors(rows), desc.encode(frames), atol=1e-6)
    assert idx.config["fps"] == 4.0 and idx.policy["name"] == "builtin"


def test_kill_resume_and_extend_without_duplicates(tmp_path, monkeypatch):
    manifest = _corpus(tmp_path)
    real = content_mod.read_item_frames
    calls = {"n": 0}

    def dies_on_third(path, fps):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(path, fps)

    monkeypatch.setattr(content_mod, "read_item_frames", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_content_index(manifest, tmp_path / "I", fps=4.0, progress=False, shard_size=1)
    assert set(VectorIndex.open(tmp_path / "I").item_ids) == {"v0", "v1"}
    monkeypatch.setattr(content_mod, "read_item_frames", real)
    rep = build_content_index(manifest, tmp_path / "I", fps=4.0, progress=False)
    assert rep.already == 2 and rep.added == 3
    # extend with a new item
    _corpus(tmp_path, n_extra_images=1)
    rep = build_content_index(tmp_path / "train.parquet", tmp_path / "I", fps=4.0, progress=False)
    assert rep.already == 5 and rep.added == 1
    meta = VectorIndex.open(tmp_path / "I").metadata
    assert meta["item_id"].value_counts().to_dict() == {"v0": 8, "v1": 8, "v2": 4, "im0": 1, "im1": 1, "im2": 1}
    assert not meta.duplicated(["item_id", "frame"]).any()


def test_another_descriptor_or_rate_is_refused(built, tmp_path):
    import torch

    root, manifest, _ = built
    with pytest.raises(DiffmemError, match="fps"):
        build_content_index(manifest, root / "INDEX", fps=8.0, progress=False)

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 4)

    model = tmp_path / "m.pt"
    torch.jit.script(Tiny()).save(str(model))
    with pytest.raises(PolicyMismatchError, match="builtin"):
        build_content_index(manifest, root / "INDEX", descriptor=f"sscd:{model}", fps=4.0, progress=False)
    with pytest.raises(PolicyMismatchError):
        open_content_index(root / "INDEX", f"sscd:{model}")


def test_empty_training_sets_and_empty_indexes_are_errors_where_they_arise(tmp_path, capsys):
    """Reliability issue: an empty folder, or a set whose every file is unreadable, was indexed
    "successfully" and the audit against it crashed later (`supplied range of [-inf, 1.0]`)."""
    from diffmem import cli
    from diffmem.errors import BadInputError

    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no media item to index"):
        build_content_index(tmp_path / "empty", tmp_path / "I0", progress=False)
    assert not (tmp_path / "I0" / "index.json").exists()  # refused before anything was written
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mp4").write_bytes(b"not a video")
    (bad / "b.mp4").write_bytes(b"not a video either")
    assert cli.main(["index", "build", str(bad), "--out", str(tmp_path / "I1")]) == 1
    err = capsys.readouterr().err
    assert "no frame of any training item could be read" in err and "2 items skipped" in err
    with pytest.raises(BadInputError, match="holds no frame descriptors"):
        open_content_index(tmp_path / "I1")


def test_a_policy_other_than_the_indexs_is_refused_not_ignored(built):
    root, _, _ = built
    with pytest.raises(PolicyMismatchError, match="'legacy-dcr'"):
        open_content_index(root / "INDEX", policy="legacy-dcr")
    index, desc = open_content_index(root / "INDEX", policy="builtin")  # its own policy, named: fine
    assert desc.policy.name == "builtin"


def test_truncated_files_are_indexed_marked_and_counted(tmp_path):
    """A video cut short is indexed from the frames that decoded, marked `truncated` in the index metadata,
    the build report and the audit (the build used to drop the flag)."""
    from diffmem.studies.audit import audit

    spec = ClipSpec.make("cat", "grass", "linear", "right", size=48, n_frames=16)
    root = tmp_path / "train"
    root.mkdir()
    full = write_video(root / "whole.webm", render_clip(spec), fps=8)
    data = full.read_bytes()
    (root / "half.webm").write_bytes(data[: len(data) // 2])
    rep = build_content_index(root, tmp_path / "I", fps=8.0, progress=False)
    assert rep.truncated == ["half"] and rep.as_dict()["truncated"] == ["half"]
    meta = rep.index.metadata
    assert set(meta[meta["truncated"]]["item_id"]) == {"half"} and not meta[meta["item_id"] == "whole"]["truncated"].any()
    res = audit(root, tmp_path / "I", tmp_path / "A", motion=False, progress=False, report=False)
    by_id = {r["id"]: r for r in res.items}
    assert by_id["half"]["truncated"] and not by_id["whole"]["truncated"] and res.summary["n_truncated"] == 1


@pytest.mark.slow
def test_a_build_killed_at_half_keeps_all_but_the_last_seconds_and_equals_an_uninterrupted_one(tmp_path):
    """kill -9 of `diffmem index build` half-way: the buffer is committed every COMMIT_SECONDS (here 0.5 s,
    and the descriptor slowed to 0.2 s per item), so the rerun redoes only the last moments' items
    (before: vectors were committed every 65,536, so a small build kept nothing)."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from diffmem.world import make_world

    make_world(tmp_path / "w", seed=0, size="tiny")
    train = tmp_path / "w" / "train.parquet"
    n_items = len(pd.read_parquet(train))
    src = str(Path(__file__).resolve().parents[2] / "src")
    slow = ("import sys, time\nfrom diffmem.index.faiss_index import VectorIndex\nVectorIndex.COMMIT_SECONDS = 0.5\n"
            "from diffmem.features.builtin import BuiltinDescriptor as B\nenc = B.encode\n"
            "B.encode = lambda self, *a, **k: (time.sleep(0.2), enc(self, *a, **k))[1]\n"
            "from diffmem.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "I"
    proc = subprocess.Popen([sys.executable, "-c", slow, "index", "build", str(train), "--out", str(out)],
                            env={**os.environ, "PYTHONPATH": src}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0, done = time.time(), 0
    while done < n_items // 2 and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
        try:
            done = json.loads((out / "index.json").read_text())["n_items"]
        except (OSError, ValueError, KeyError):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = json.loads((out / "index.json").read_text())["n_items"]
    assert n_items // 2 <= kept < n_items
    rerun = build_content_index(train, out, progress=False)
    # redone: what was not committed when killed (at most ~0.5 s of 0.2 s items, plus the ones after)
    assert rerun.already == kept and rerun.added == n_items - kept
    whole = build_content_index(train, tmp_path / "J", progress=False)
    a, b = rerun.index.metadata, whole.index.metadata
    assert sorted(a["item_id"]) == sorted(b["item_id"]) and len(rerun.index) == len(whole.index)
    va = rerun.index.vectors(np.arange(len(rerun.index)))
    vb = whole.index.vectors(np.arange(len(whole.index)))
    key = lambda m: list(zip(m["item_id"], m["frame"]))  # noqa: E731
    ia = np.argsort([f"{i}/{f:04d}" for i, f in key(a)])
    ib = np.argsort([f"{i}/{f:04d}" for i, f in key(b)])
    assert np.allclose(va[ia], vb[ib], atol=1e-6)


def test_prefetch_reads_ahead_in_order_and_passes_errors_on(tmp_path, monkeypatch):
    """Decoding overlaps the descriptor (a background thread reads up to `ahead` items ahead); the items
    come back in their order, a file that cannot be read comes back as its BadInputError, and leaving
    early starts no further read."""
    import threading

    from diffmem.data.manifest import Item
    from diffmem.errors import BadInputError

    started, gate = [], threading.Event()

    def fake_read(path, fps):
        started.append(path.name)
        gate.wait(5)
        if path.name == "bad.mp4":
            raise BadInputError(path, "not a video file")
        return path.name

    monkeypatch.setattr(content_mod, "read_item_frames", fake_read)
    items = [Item(n, tmp_path / f"{n}.mp4") for n in ("a", "b", "bad", "c", "d", "e")]
    gen = content_mod.prefetch_frames(items, 8.0, ahead=2)
    gate.set()
    got = [(it.id, fr if isinstance(fr, str) else type(fr).__name__) for it, fr in gen]
    assert got == [("a", "a.mp4"), ("b", "b.mp4"), ("bad", "BadInputError"), ("c", "c.mp4"), ("d", "d.mp4"),
                   ("e", "e.mp4")]
    started.clear()
    gen = content_mod.prefetch_frames(items, 8.0, ahead=2)
    assert next(gen)[0].id == "a"
    gen.close()  # the consumer stops after one item
    assert len(started) <= 3  # a, b, and the one queued when a was handed out; nothing after the close


def test_item_workers_give_the_same_index_as_one(built, tmp_path):
    """Items described in parallel threads (the default on a machine with spare cores) are added in item
    order with the vectors one thread gives: an item's descriptors do not depend on its neighbours."""
    root, manifest, _ = built
    one = build_content_index(manifest, tmp_path / "one", fps=4.0, progress=False, workers=1)
    three = build_content_index(manifest, tmp_path / "three", fps=4.0, progress=False, workers=3)
    a, b = VectorIndex.open(one.index.folder), VectorIndex.open(three.index.folder)
    assert np.array_equal(a.vectors(), b.vectors())
    assert a.metadata.equals(b.metadata) and [s.id for s in three.skipped] == ["broken"]


def test_item_workers_fill_the_cores_left_by_torchs_threads(monkeypatch):
    import torch

    monkeypatch.setattr(content_mod.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert content_mod.item_workers() == 4            # 8 cores / 2 threads per operation
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert content_mod.item_workers() == content_mod.MAX_ITEM_WORKERS == 4  # capped
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert content_mod.item_workers() == 1 and content_mod.item_workers(gpu=True) == 1
    assert content_mod.item_workers(3) == 3
    with pytest.raises(DiffmemError, match="workers must be >= 1"):
        content_mod.item_workers(0)
