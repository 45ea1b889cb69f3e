"""AMG's training reference (descriptor vectors, groups, motion index, cache) and the hook built from it."""
import stat

import numpy as np
import pytest

from diffmem.guidance.config import AMGConfig
from diffmem.guidance.reference import TrainingReference, build_amg_hook
from diffmem.guidance.similarity import IndexNeighbours
from diffmem.index import build_content_index

from _amg_toy import DUP, OTHER, RandomDescriptor, frames_of, smooth_pattern, write_toy_training_set


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    write_toy_training_set(root)
    return root


def test_training_reference_and_cache(toy, tmp_path):
    ref = TrainingReference.build(toy, fps=8.0, cache=tmp_path)
    assert sorted(set(ref.ids)) == ["v0", "v1", "v2", "v3"] and len(ref.ids) == 16
    assert ref.groups["v0"] == ref.groups["v1"] == ref.groups["v2"] != ref.groups["v3"]  # byte-identical copies
    (cache_file,) = tmp_path.glob("training-*.npz")
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o644  # written like every result (io.atomic), not 0600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    again = TrainingReference.build(toy, fps=8.0, cache=tmp_path)  # from the cache file
    assert np.array_equal(again.vectors, ref.vectors) and again.groups == ref.groups and again.ids == ref.ids
    frames = frames_of(smooth_pattern(1))
    s = ref.content_score(frames)
    assert s["content_score"] > 0.95 and s["content_item_caption"] == DUP


def test_content_score_is_the_nearest_training_frame_by_brute_force(toy):
    ref = TrainingReference.build(toy, fps=8.0)
    frames = frames_of(smooth_pattern(2) * 0.9)
    q = ref.descriptor.encode(frames)
    sims = q @ ref.vectors.T  # every generated frame against every training frame
    best = sims.max(1)
    s = ref.content_score(frames)
    assert s["content_score"] == pytest.approx(float(best.max()), abs=1e-5)
    assert s["content_frame"] == int(best.argmax())
    row = int(sims[s["content_frame"]].argmax())
    assert (s["content_item"], s["content_item_frame"]) == (ref.ids[row], ref.frames_idx[row])
    assert s["coverage"] == pytest.approx(float((best > ref.tau_c).mean()))


def test_thresholds_follow_tau_c(toy):
    ref = TrainingReference.build(toy, fps=8.0, descriptor=RandomDescriptor(threshold=None))  # not calibrated
    other = ref.other_source_similarities()
    # 4 clips of 4 frames: the 12 frames of the triplicated cat have the dog as other source and vice versa
    assert len(other) == 16 and other.max() < 0.9
    assert ref.tau_c == pytest.approx(np.quantile(other, 0.99)) and "not calibrated" in ref.tau_c_source
    hook = build_amg_hook(ref, AMGConfig(content_lo=0.9, content_hi=0.95), kind="video")
    lam = hook.schedule("content")
    tau = np.quantile(other, 0.99)
    assert lam(0, 1000) == pytest.approx(0.95 * tau) and lam.lo == pytest.approx(0.9 * tau)


def test_content_index_as_the_training_set(toy, tmp_path):
    build_content_index(toy / "train.parquet", tmp_path / "ix", descriptor="builtin", fps=8.0, progress=False)
    ref = TrainingReference.build(tmp_path / "ix", fps=8.0, cache=tmp_path / "c")
    assert isinstance(ref.neighbours, IndexNeighbours)
    assert sorted(ref.item_captions) == ["v0", "v1", "v2", "v3"]  # items (paths, captions) from the index
    s = ref.content_score(frames_of(smooth_pattern(2)))
    assert s["content_score"] > 0.95 and s["content_item"] == "v3" and s["content_item_caption"] == OTHER
    scores, rows = ref.neighbours.search(ref.vectors[:2], 1)
    assert np.allclose(ref.neighbours.vectors(rows[:, 0]), ref.vectors[:2], atol=1e-5)


def test_vectors_come_from_a_content_index_at_the_same_rate(toy, tmp_path, monkeypatch):
    # the index's build described every training frame with this descriptor at this rate: the reference
    # reads those vectors instead of describing the frames again, and they equal a fresh description
    from diffmem.features.builtin import BuiltinDescriptor

    fresh = TrainingReference.build(toy, fps=8.0)  # described frame by frame, no index
    build_content_index(toy / "train.parquet", tmp_path / "ix", descriptor="builtin", fps=8.0, progress=False)
    calls = []
    real = BuiltinDescriptor.encode
    monkeypatch.setattr(BuiltinDescriptor, "encode", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    ref = TrainingReference.build(tmp_path / "ix", fps=8.0, cache=tmp_path / "c")
    assert not calls
    order = [fresh.ids.index(i) + f for i, f in zip(ref.ids, ref.frames_idx)]
    assert [(fresh.ids[k], fresh.frames_idx[k]) for k in order] == list(zip(ref.ids, ref.frames_idx))
    assert np.allclose(ref.vectors, fresh.vectors[order], atol=1e-6)
    assert np.array_equal(ref.fd_frames, fresh.fd_frames[order])
    # an index at another rate holds other frames: described again
    build_content_index(toy / "train.parquet", tmp_path / "ix4", descriptor="builtin", fps=4.0, progress=False)
    TrainingReference.build(tmp_path / "ix4", fps=8.0, cache=tmp_path / "c4")
    assert calls
