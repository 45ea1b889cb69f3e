"""A reusable motion index: `diffmem index build --motion` once, then audits that decode no training video."""
import json
import shutil

import av
import numpy as np
import pandas as pd
import pytest

from diffmem import cli
from diffmem.index import MotionIndex, build_motion_index
from diffmem.index.content import content_items
from diffmem.index.faiss_index import VectorIndex
from diffmem.io.video import write_video
from diffmem.world.clips import ClipSpec, render_clip

CLIPS = {
    "a": ("cat", "grass", "linear", "right"),
    "b": ("rocket", "bricks", "circle", "cw"),
    "c": ("coin", "stars", "zoom_in", ""),
    "d": ("wheel", "grass", "linear", "up"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Four training videos, an index built with --motion, and two generated videos: a copy of b under
    another name and a clip of its own."""
    root = tmp_path_factory.mktemp("motion-index")
    (root / "train").mkdir()
    (root / "gen").mkdir()
    for name, (sprite, bg, motion, direction) in CLIPS.items():
        write_video(root / "train" / f"{name}.mp4",
                    render_clip(ClipSpec.make(sprite, bg, motion, direction, size=64, n_frames=16)), fps=8)
    shutil.copy(root / "train" / "b.mp4", root / "gen" / "copy_of_b.mp4")
    write_video(root / "gen" / "own.mp4",
                render_clip(ClipSpec.make("cat", "stars", "zoom_out", size=64, n_frames=16)), fps=8)
    assert cli.main(["index", "build", str(root / "train"), "--out", str(root / "idx"), "--motion"]) == 0
    return root


@pytest.fixture
def opened(monkeypatch):
    """Every path PyAV opens in this process (all video decoding and probing goes through av.open)."""
    paths = []
    real = av.open

    def spy(file, *args, **kwargs):
        paths.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", spy)
    return paths


def test_index_build_motion_indexes_every_training_video(built, capsys):
    mi = MotionIndex.open(built / "idx" / "motion_index")
    assert sorted(mi.train_ids) == sorted(CLIPS)
    # 16 frames at 8 fps -> 15 flows -> 15 - 4 + 1 = 12 windows of k = 4 flows per video
    assert len(mi) == 4 * 12
    assert mi.policy.fps == 8.0 and mi.policy.k == 4 and mi.policy.flow.backend == "dis"
    # built again: nothing to add, the same windows
    assert cli.main(["index", "build", str(built / "train"), "--out", str(built / "idx"), "--motion"]) == 0
    assert "48 motion windows of 4 videos" in capsys.readouterr().out


def test_audit_against_a_prebuilt_index_decodes_no_training_video(built, opened, tmp_path):
    out = tmp_path / "audit"
    assert cli.main(["audit", str(built / "gen"), str(built / "idx"), "--out", str(out), "--no-report"]) == 0
    train = {str(p) for p in (built / "train").glob("*.mp4")}
    gen = {str(p) for p in (built / "gen").glob("*.mp4")}
    assert not train & set(opened), "a training video was decoded"
    assert gen <= set(opened)  # the spy sees the decoding that does happen
    assert not (out / "motion_index").exists()
    rec = json.loads((out / "audit.json").read_text())
    assert rec["config"]["motion"]["index"] == str(built / "idx" / "motion_index")
    items = {it["id"]: it for it in rec["items"]}
    assert items["copy_of_b"]["motion_memorized"] and items["copy_of_b"]["motion_match"]["train_id"] == "b"
    assert items["copy_of_b"]["motion_score"] > 0.99
    assert not items["own"]["motion_memorized"]


def test_the_report_decodes_only_the_training_clips_it_shows(built, opened, tmp_path):
    out = tmp_path / "audit"
    assert cli.main(["audit", str(built / "gen"), str(built / "idx"), "--out", str(out)]) == 0
    train_opened = {p for p in opened if p.startswith(str(built / "train"))}
    shown = set()  # the training clips of the flagged items' matches: the report may show them
    for it in json.loads((out / "audit.json").read_text())["items"]:
        if it["verdict"] != "none":
            shown |= {str(built / "train" / f"{(it.get(k) or {}).get('train_id')}.mp4")
                      for k in ("content_match", "motion_match") if it.get(k)}
    assert str(built / "train" / "b.mp4") in train_opened and train_opened <= shown
    assert str(built / "train" / "d.mp4") not in train_opened  # matched by nothing: never read


def test_same_results_as_an_audit_that_builds_its_own_motion_index(built, tmp_path):
    a, b = tmp_path / "prebuilt", tmp_path / "own"
    assert cli.main(["audit", str(built / "gen"), str(built / "idx"), "--out", str(a), "--no-report"]) == 0
    assert cli.main(["audit", str(built / "gen"), str(built / "idx"), "--out", str(b), "--no-report",
                     "--motion-index", str(tmp_path / "fresh")]) == 0
    ta, tb = pd.read_parquet(a / "audit.parquet"), pd.read_parquet(b / "audit.parquet")
    assert list(ta["id"]) == list(tb["id"])
    np.testing.assert_array_equal(ta["motion_score"].to_numpy(), tb["motion_score"].to_numpy())
    assert list(ta["verdict"]) == list(tb["verdict"])


def test_a_prebuilt_index_of_another_policy_is_not_used(built, tmp_path):
    other = tmp_path / "idx"
    shutil.copytree(built / "idx", other, ignore=shutil.ignore_patterns("motion_index"))
    assert cli.main(["index", "build", str(built / "train"), "--out", str(other), "--motion", "--motion-k", "3"]) == 0
    out = tmp_path / "audit"
    with pytest.warns(UserWarning, match="not using the content index's motion index: .*k3"):
        assert cli.main(["audit", str(built / "gen"), str(other), "--out", str(out), "--no-report"]) == 0
    assert (out / "motion_index" / "index.json").is_file()  # built in OUT with the audit's own policy (k = 4)


def test_an_incomplete_prebuilt_index_is_not_used(built, tmp_path):
    other = tmp_path / "idx"
    shutil.copytree(built / "idx", other, ignore=shutil.ignore_patterns("motion_index"))
    items = [it for it in content_items(VectorIndex.open(other)) if it.id != "d"]
    build_motion_index(items, other / "motion_index")
    out = tmp_path / "audit"
    with pytest.warns(UserWarning, match="lacks 1 training videos"):
        assert cli.main(["audit", str(built / "gen"), str(other), "--out", str(out), "--no-report"]) == 0
    assert (out / "motion_index" / "index.json").is_file()


@pytest.mark.slow
def test_the_motion_index_on_ray_is_the_local_one(built, tmp_path):
    pytest.importorskip("ray")
    items = content_items(VectorIndex.open(built / "idx"))
    ray_index, _ = build_motion_index(items, tmp_path / "ray", engine="ray")
    local = MotionIndex.open(built / "idx" / "motion_index")
    np.testing.assert_array_equal(ray_index.index.vectors(), local.index.vectors())
    pd.testing.assert_frame_equal(ray_index.index.metadata.reset_index(drop=True),
                                  local.index.metadata.reset_index(drop=True))
