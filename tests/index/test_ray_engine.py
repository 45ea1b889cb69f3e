"""The Ray engine gives the local engine's index, item for item, and resumes from finished tasks.

Runs a local Ray (2 CPUs, started once for the module: a start costs several seconds). `make test`
installs the ray extra, so CI runs these; without Ray installed they are skipped.
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from diffmem.errors import DiffmemError
from diffmem.index import VectorIndex, build_content_index

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A slice of the tiny synthetic world (videos, duplicates, images) plus one corrupt file."""
    from diffmem.world import make_world

    root = tmp_path_factory.mktemp("world")
    make_world(root, seed=0, size="tiny")
    train = pd.read_parquet(root / "train.parquet")
    part = pd.concat([train[train.kind == "video"].head(7), train[train.kind == "image"].head(2)])
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    part = pd.concat([part.iloc[:4], pd.DataFrame([{"id": "broken", "path": "broken.mp4", "caption": "x",
                                                     "kind": "video"}]), part.iloc[4:]])
    part[["id", "path", "caption", "kind"]].to_parquet(root / "slice.parquet")
    return root


@pytest.fixture(scope="module")
def local_index(world):
    build_content_index(world / "slice.parquet", world / "LOCAL", fps=4.0, progress=False, shard_size=16)
    return VectorIndex.open(world / "LOCAL")


@pytest.fixture(scope="module")
def ray_up():
    pytest.importorskip("ray")
    from diffmem.index.ray_engine import ray_session

    with ray_session(num_cpus=2) as ray:
        yield ray


def assert_same_index(a: VectorIndex, b: VectorIndex):
    assert len(a) == len(b) > 0
    assert [s["n"] for s in a.meta["shards"]] == [s["n"] for s in b.meta["shards"]]
    pd.testing.assert_frame_equal(a.metadata, b.metadata)  # same ids, order, frames, timestamps, paths
    np.testing.assert_allclose(a.vectors(), b.vectors(), atol=1e-6)
    assert a.skipped == b.skipped and a.fingerprint == b.fingerprint
    assert a.config == b.config and a.factory == b.factory


@pytest.mark.slow
def test_killed_ray_build_resumes_and_equals_the_local_build(world, local_index, ray_up, monkeypatch):
    from diffmem.index import ray_engine

    out = world / "RAY"
    real = ray_engine._commit

    def killed(*a, **k):
        raise KeyboardInterrupt  # the driver dies when the first finished task comes back

    monkeypatch.setattr(ray_engine, "_commit", killed)
    with pytest.raises(KeyboardInterrupt):
        ray_engine.build_content_index_ray(world / "slice.parquet", out, fps=4.0, progress=False,
                                           shard_size=16, items_per_task=3, num_actors=1)
    staged = sorted(p.stem for p in (out / ".ray_staging").glob("*.json"))
    assert staged  # at least the task that came back is on disk, complete
    # a task killed half-way leaves files without its .json marker: redone, not trusted
    (out / ".ray_staging" / "000003-deadbeef0000.npy").write_bytes(b"half")
    monkeypatch.setattr(ray_engine, "_commit", real)
    rep = ray_engine.build_content_index_ray(world / "slice.parquet", out, fps=4.0, progress=False,
                                             shard_size=16, items_per_task=3, num_actors=2)
    assert rep.engine["tasks"] == 4
    assert rep.engine["tasks_from_staging"] == len(staged) and rep.engine["tasks_run"] == 4 - len(staged)
    assert rep.added == 9 and [s.id for s in rep.skipped] == ["broken"]
    # the same index as the local engine: ids, order, metadata, descriptors, skipped items
    assert_same_index(local_index, VectorIndex.open(out))
    assert not (out / ".ray_staging").exists()


@pytest.mark.slow
def test_ray_build_killed_while_encoding_redoes_only_unfinished_shards(world, ray_up, monkeypatch, tmp_path):
    """A compressed Ray build whose shard-encoding workers die resumes: a rerun extracts nothing again,
    keeps the trained index and the finished shards' codes, and encodes exactly the shards that died."""
    import faiss

    from diffmem.index import ray_engine

    factory = "IVF2,PQ8x4fs"  # tiny: 30 vectors of the slice, cut into shards of about 6
    kw = dict(fps=4.0, progress=False, shard_size=6, factory=factory)
    real_map = ray_engine.ray_map
    scheduled = []

    def workers_die(fn, args, **_):
        names = [a[1] for a in args]
        scheduled.append(names)
        victims = {names[1], names[-1]}

        def encode_or_die(folder, name, offset):  # runs in a Ray worker (pickled by value)
            if name in victims:
                raise RuntimeError(f"worker killed while encoding shard {name}")
            return fn(folder, name, offset)

        # the survivors first, so that every one of them has finished when the build fails
        real_map(fn, [a for a in args if a[1] not in victims])
        return real_map(encode_or_die, [a for a in args if a[1] in victims])

    out = tmp_path / "RAY_IVF"
    monkeypatch.setattr(ray_engine, "ray_map", workers_die)
    with pytest.raises(Exception, match="worker killed while encoding"):
        ray_engine.build_content_index_ray(world / "slice.parquet", out, items_per_task=3, num_actors=1, **kw)
    shards = scheduled[0]
    assert len(shards) >= 4 and len(VectorIndex.open(out).meta["shards"]) == len(shards)
    dead = {shards[1], shards[-1]}
    codes = out / "codes"
    done = {p.stem for p in codes.glob("[0-9]*.faiss")}
    assert done == set(shards) - dead and not (out / "faiss.index").exists()
    stamp = {p.name: p.stat().st_mtime_ns for p in codes.glob("*.faiss")}

    monkeypatch.setattr(ray_engine, "ray_map", lambda fn, args, **k: scheduled.append([a[1] for a in args])
                        or real_map(fn, args, **k))
    rep = ray_engine.build_content_index_ray(world / "slice.parquet", out, items_per_task=3, num_actors=1, **kw)
    # no item is extracted again; only the undecodable one is retried (as the local engine does)
    assert rep.added == 0 and rep.already == 9 and [s.id for s in rep.skipped] == ["broken"]
    assert rep.engine["tasks"] == 1
    assert sorted(scheduled[1]) == sorted(dead)  # only the dead shards were encoded again
    for name, ns in stamp.items():  # trained index, encoder and finished shards' codes untouched
        assert (codes / name).stat().st_mtime_ns == ns, name
    # the same compressed index as the local engine's one-process build of the same slice
    build_content_index(world / "slice.parquet", tmp_path / "LOCAL_IVF", **kw)
    a = faiss.read_index(str(tmp_path / "LOCAL_IVF" / "faiss.index"))
    b = faiss.read_index(str(out / "faiss.index"))
    assert a.ntotal == b.ntotal == len(VectorIndex.open(out))
    q = VectorIndex.open(out).vectors()
    for ix in (a, b):
        faiss.ParameterSpace().set_index_parameter(ix, "nprobe", 2)
    (da, ia), (db, ib) = a.search(q, 5), b.search(q, 5)
    assert (ia == ib).all() and np.array_equal(da, db)


@pytest.mark.slow
def test_compressed_shards_encode_as_ray_tasks(tmp_path, ray_up):
    from diffmem.index.ray_engine import ray_map
    from diffmem.index.sharded import build_compressed

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pol = {"name": "v", "descriptor": "none", "dim": 16}
    idx = {}
    for name in ("local", "ray"):
        idx[name] = VectorIndex.create(tmp_path / name, dim=16, policy=pol, factory="IVF4,PQ4x4", shard_size=500)
        for i in range(0, len(x), 500):
            idx[name].add(x[i:i + 500], [{"item_id": str(j)} for j in range(i, i + 500)])
        idx[name].flush()
    build_compressed(idx["local"])
    info = build_compressed(idx["ray"], map_fn=ray_map)
    assert info["encoded_now"] == 4
    q = x[::97]
    a = VectorIndex.open(tmp_path / "local").search(q, 3, params="nprobe=4")
    b = VectorIndex.open(tmp_path / "ray").search(q, 3, params="nprobe=4")
    assert (a[1] == b[1]).all() and (a[1][:, 0] == np.arange(0, 2000, 97)).all()


def test_without_ray_the_error_says_how_to_get_it(monkeypatch):
    from diffmem.index.ray_engine import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(DiffmemError, match=r"diffmem\[ray\]"):
        require_ray()


# The generation sweep (studies.generate_ray) is tested here too: it shares this module's local Ray,
# whose start is the expensive part.

def _tiny_model(folder, prompts):
    import torch

    from diffmem.models.tiny import TinyConfig, TinyModel, build_vocab, save_tiny

    torch.manual_seed(0)
    cfg = TinyConfig(kind="video", size=16, frames=4, channels=(8, 16), blocks=1, text_dim=16, latent_channels=8,
                     vocab=build_vocab([p["prompt"] for p in prompts]))
    m = TinyModel(cfg)
    for p in m.denoiser.parameters():  # random, non-zero outputs so that samples differ by seed
        torch.nn.init.normal_(p, std=0.05)
    save_tiny(m, folder)
    return folder


@pytest.mark.slow
def test_generation_sweep_on_ray_equals_local_generate(tmp_path, ray_up):
    from diffmem.io.video import read_frames
    from diffmem.data.prompts import as_prompt_entries
    from diffmem.studies.generate import GenerateConfig, generate
    from diffmem.studies.generate_ray import generate_ray, plan_sweep

    prompts = [{"prompt": "a cat moves right across grass", "group": "novel"},
               {"prompt": "a picture of a face on stars", "group": "dup", "id": "face"},
               {"prompt": "a digit zooms in on bricks", "id": "d"}]
    model = _tiny_model(tmp_path / "model", prompts)
    settings = GenerateConfig(n=3, seed=5, steps=2)
    generate(str(model), prompts, tmp_path / "local", settings, progress=False)
    # 2 prompt blocks x 2 seed blocks (seeds 5-6 and 7) = 4 tasks
    s = generate_ray(str(model), prompts, tmp_path / "ray", settings, progress=False, num_actors=1,
                     prompts_per_task=2, seeds_per_task=2)
    assert s["n_tasks"] == 4 and s["n_tasks_run"] == 4 and s["n_samples"] == 9
    local = pd.read_parquet(tmp_path / "local" / "manifest.parquet")
    ray_m = pd.read_parquet(tmp_path / "ray" / "manifest.parquet")
    cols = ["id", "caption", "kind", "prompt", "prompt_id", "group", "sample_index", "seed"]
    pd.testing.assert_frame_equal(local[cols], ray_m[cols])
    for a, b in zip(local["path"], ray_m["path"]):  # the same seed gives the same clip
        np.testing.assert_array_equal(read_frames(tmp_path / "local" / a).array, read_frames(tmp_path / "ray" / b).array)
    # resume: a rerun with everything done runs no task (and starts no actor)
    s = generate_ray(str(model), prompts, tmp_path / "ray", settings, progress=False, prompts_per_task=2,
                     seeds_per_task=2)
    assert s["n_tasks_run"] == 0 and s["n_samples"] == 9
    # a sample lost in a kill makes its task, and only it, due again (generate then redoes that sample)
    (tmp_path / "ray" / ray_m["path"][4]).unlink()
    tasks = plan_sweep(as_prompt_entries(prompts), settings, tmp_path / "ray", prompts_per_task=2, seeds_per_task=2)
    assert [t["done"] for t in tasks] == [False, True, True, True]  # face_s1: prompts 0-1, seeds 5-6
    with pytest.raises(DiffmemError, match="other settings"):
        generate_ray(str(model), prompts, tmp_path / "ray", GenerateConfig(n=3, seed=6, steps=2), progress=False)


def test_cli_engine_and_address(monkeypatch, tmp_path, capsys):
    import diffmem.index
    from diffmem import cli
    from diffmem.index import ray_engine

    seen = {}

    class Rep:
        skipped = []
        index = type("I", (), {"meta": {"n_items": 0}, "policy": {"name": "builtin"}, "fingerprint": "f"})()

        def as_dict(self):
            return {"n_vectors": 0, "added": 0, "already": 0, "skipped": [], "truncated": []}

    def fake(train, out, **kw):
        seen.update(kw, train=train, out=out)
        return Rep()

    monkeypatch.setattr(ray_engine, "build_content_index_ray", fake)
    assert cli.main(["index", "build", "T", "--out", str(tmp_path / "I"), "--engine", "ray", "--address", "auto",
                     "--factory", "IVF64,PQ8x4fs"]) == 0
    assert seen["address"] == "auto" and seen["factory"] == "IVF64,PQ8x4fs" and seen["train"] == "T"
    assert seen["device"] is None  # the default --device cpu lets Ray actors take the cluster's GPUs
    monkeypatch.setattr(diffmem.index, "build_content_index", lambda *a, **k: pytest.fail("local engine used"))
    assert cli.main(["index", "build", "T", "--out", str(tmp_path / "I"), "--address", "auto"]) == 1
    assert "--engine ray" in capsys.readouterr().err
