"""The embedded world: determinism, ground truth against the files, captions, prompts, trajectories."""
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diffmem.world import (SIGNATURE_MOTIONS, ClipSpec, caption, item_specs, load_ground_truth,
                                make_world, render_clip, trajectory, true_flow)
from diffmem.world.assets import Sprite, _ellipse_alpha
from diffmem.errors import BadInputError
from diffmem.io.video import read_frames

# Independent table of what a caption must say for each motion (not imported from the code).
VERB = {"linear": "moves", "circle": "circles", "zigzag": "zigzags", "zoom_in": "grows", "zoom_out": "shrinks",
        "static": "still view", "pan": "camera pans", "loop": "loops", "bounce": "bounces", "spiral": "spirals"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "world"
    summary = make_world(out, seed=0, size="tiny")
    return out, summary


def _frames(out: Path, rel: str) -> np.ndarray:
    return read_frames(out / rel).array


def _all_frames(out: Path) -> dict:
    df = pd.read_parquet(out / "train.parquet")
    return {r.id: _frames(out, r.path) for r in df.itertuples()}


def _read_prompts(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]


# ---- determinism ------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_world(world, tmp_path):
    out, _ = world
    again = tmp_path / "again"
    make_world(again, seed=0, size="tiny")
    for name in ("train.parquet", "ground_truth.json", "prompts.jsonl"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    a, b = _all_frames(out), _all_frames(again)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    # on one machine the encoder is deterministic too: the very same files
    for sub in ("videos", "images"):
        for f in (out / sub).iterdir():
            assert f.read_bytes() == (again / sub / f.name).read_bytes(), f.name


def test_other_seed_gives_another_world(world, tmp_path):
    out, _ = world
    other = tmp_path / "other"
    make_world(other, seed=1, size="tiny")
    ga, gb = load_ground_truth(out), load_ground_truth(other)
    assert [i["caption"] for i in ga["items"]] != [i["caption"] for i in gb["items"]]
    assert [i["spec"] for i in ga["items"]] != [i["spec"] for i in gb["items"]]
    assert not np.array_equal(_frames(out, "videos/vid0000.mp4"), _frames(other, "videos/vid0000.mp4"))


# ---- ground truth against the files -----------------------------------------------------------------

def test_train_parquet_matches_ground_truth_and_summary(world):
    out, summary = world
    df = pd.read_parquet(out / "train.parquet")
    assert list(df.columns) == ["id", "path", "caption", "kind"]
    assert df.id.is_unique
    for r in df.itertuples():
        p = out / r.path
        assert p.is_file() and p.stat().st_size > 0, r.path
        assert p.suffix == (".mp4" if r.kind == "video" else ".png")
    gt = load_ground_truth(out)
    rows = [(i["id"], i["path"], i["caption"], i["kind"]) for i in gt["items"]]
    assert rows == list(df.itertuples(index=False, name=None))
    stored = json.loads((out / "summary.json").read_text())
    assert stored["n_items"] == summary.n_items == len(df)
    assert stored["n_videos"] == (df.kind == "video").sum() and stored["n_images"] == (df.kind == "image").sum()
    assert summary.n_captions == df.caption.nunique()
    assert summary.n_sources == len({i["source"] for i in gt["items"]})
    assert summary.n_duplicate_groups == len(gt["duplicate_groups"]) >= 2
    assert summary.n_duplicated_files == sum(len(g["ids"]) for g in gt["duplicate_groups"])
    assert summary.n_prompts == dict(Counter(p["group"] for p in _read_prompts(out)))
    # no stray files: every media file on disk is in the training set
    on_disk = {f"{p.parent.name}/{p.name}" for p in (out / "videos").iterdir()} | \
              {f"{p.parent.name}/{p.name}" for p in (out / "images").iterdir()}
    assert on_disk == set(df.path)


def test_duplicate_groups_are_identical_files_with_one_caption(world):
    out, _ = world
    gt = load_ground_truth(out)
    by_id = {i["id"]: i for i in gt["items"]}
    counts = sorted((len(g["ids"]) for g in gt["duplicate_groups"]), reverse=True)
    assert len(set(counts)) >= 2  # several different copy counts
    for g in gt["duplicate_groups"]:
        assert g["count"] == len(g["ids"]) >= 2
        files = [by_id[i]["path"] for i in g["ids"]]
        first = (out / files[0]).read_bytes()
        ref = _frames(out, files[0])
        for f in files[1:]:
            assert (out / f).read_bytes() == first
            assert np.array_equal(_frames(out, f), ref)
        assert {by_id[i]["caption"] for i in g["ids"]} == {g["caption"]}
        # nobody else carries a duplicated clip's caption
        assert {i["id"] for i in gt["items"] if i["caption"] == g["caption"]} == set(g["ids"])
    assert gt["duplicated_video_captions"] == [g["caption"] for g in gt["duplicate_groups"] if g["kind"] == "video"]


def test_caption_only_duplicates_share_the_caption_not_the_content(world):
    out, _ = world
    gt = load_ground_truth(out)
    by_id = {i["id"]: i for i in gt["items"]}
    assert gt["caption_groups"]
    for g in gt["caption_groups"]:
        assert len(g["ids"]) == g["count"] >= 2
        assert {by_id[i]["caption"] for i in g["ids"]} == {g["caption"]}
        assert len({by_id[i]["source"] for i in g["ids"]}) == len(g["ids"])
        frames = [_frames(out, by_id[i]["path"]).astype(np.float32) for i in g["ids"]]
        for i in range(len(frames)):
            for j in range(i + 1, len(frames)):
                assert np.abs(frames[i] - frames[j]).mean() > 5.0  # clearly different clips
        assert g["caption"] in gt["shared_captions"]
    assert gt["caption_duplicated_captions"] == [g["caption"] for g in gt["caption_groups"]]


def test_ground_truth_spec_rerenders_the_file(world):
    out, _ = world
    specs = item_specs(out)
    gt = load_ground_truth(out)
    for it in gt["items"][::3]:
        spec = specs[it["id"]]
        assert ClipSpec.from_dict(spec.to_dict()) == spec
        assert caption(spec) == it["caption"]
        want = render_clip(spec).astype(np.float64)
        got = _frames(out, it["path"]).astype(np.float64)
        assert got.shape == want.shape
        mse = np.mean((got - want) ** 2)
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 30  # the file is this spec (lossy mp4 only)


def test_captions_name_sprite_background_and_motion(world):
    gt = load_ground_truth(world[0])
    for it in gt["items"]:
        c = it["caption"]
        assert it["background"] in c
        if it["sprite"]:
            assert f" {it['sprite']} " in f" {c} "
        if it["kind"] == "image":
            assert c.startswith("a picture of ")
            continue
        assert VERB[it["motion"]] in c, c
        if it["motion"] in ("linear", "pan"):
            assert it["direction"] in c
    words = {w for it in gt["items"] for w in it["caption"].split()}
    assert len(words) < 40  # a small regular vocabulary


# ---- prompts ------------------------------------------------------------------------------------------

def test_prompt_groups(world):
    out, _ = world
    gt = load_ground_truth(out)
    prompts = _read_prompts(out)
    groups = Counter(p["group"] for p in prompts)
    assert {"duplicated_video", "duplicated_caption", "novel", "motion_memorization"} <= set(groups)
    train_captions = {i["caption"] for i in gt["items"]}
    by_id = {i["id"]: i for i in gt["items"]}
    videos = [i for i in gt["items"] if i["kind"] == "video"]
    for p in prompts:
        assert set(p) >= {"prompt", "group", "train_ids"}
        if p["group"] == "duplicated_video":
            g = next(g for g in gt["duplicate_groups"] if g["caption"] == p["prompt"])
            assert p["train_ids"] == g["ids"] and g["kind"] == "video"
        elif p["group"] == "duplicated_caption":
            assert {by_id[i]["caption"] for i in p["train_ids"]} == {p["prompt"]}
            assert len({by_id[i]["source"] for i in p["train_ids"]}) == len(p["train_ids"]) >= 2
        elif p["group"] == "novel":
            assert p["prompt"] not in train_captions and p["train_ids"] == []
            # recognisable: each part occurs in training, never all together
            assert any(i["sprite"] == p["sprite"] for i in videos)
            assert any(i["background"] == p["background"] for i in videos)
            assert any(i["caption"].split()[2:3] == p["prompt"].split()[2:3] for i in videos)  # the verb
            assert not any((i["sprite"], i["background"], i["motion"]) == (p["sprite"], p["background"], p["motion"])
                           and (i["motion"] not in ("linear",) or i["direction"] == p["direction"]) for i in videos)


def test_motion_memorization_prompts(world):
    out, _ = world
    gt = load_ground_truth(out)
    by_id = {i["id"]: i for i in gt["items"]}
    mm = [p for p in _read_prompts(out) if p["group"] == "motion_memorization"]
    assert mm and {p["role"] for p in mm} == {"memorized", "control"}
    train_captions = {i["caption"] for i in gt["items"]}
    for p in mm:
        assert p["prompt"] not in train_captions
        # the appearance is one that training shows
        assert p["appearance_ids"]
        assert all((by_id[i]["sprite"], by_id[i]["background"]) == (p["sprite"], p["background"])
                   for i in p["appearance_ids"])
        src = [by_id[i] for i in p["signature_source_ids"]]
        assert len({s["source"] for s in src}) == 1 and src[0]["motion"] in SIGNATURE_MOTIONS
        assert (src[0]["sprite"], src[0]["background"]) != (p["sprite"], p["background"])
        if p["role"] == "memorized":
            assert p["motion"] == src[0]["motion"] and p["train_ids"] == p["signature_source_ids"]
            # the motion occurs in training only in that one (duplicated) source
            users = {i["source"] for i in gt["items"] if i["motion"] == p["motion"]}
            assert users == {src[0]["source"]} and len(src) >= 2
        else:
            assert p["motion"] not in SIGNATURE_MOTIONS and p["train_ids"] == []


# ---- rendering and trajectories --------------------------------------------------------------------

def _disc_sprite(n=41):
    """A white disc: its centroid is its centre whatever the scale, so positions can be read off the frames."""
    a = _ellipse_alpha(n, n, feather=0.05)
    return Sprite(np.ones((n, n, 3), np.float32), a)


def _centroids(frames):
    m = frames[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:m.shape[1], 0:m.shape[2]]
    w = m.sum(axis=(1, 2))
    return (m * xs).sum(axis=(1, 2)) / w, (m * ys).sum(axis=(1, 2)) / w, w


BLACK = np.zeros((8, 8, 3), np.uint8)


def test_linear_motion_is_where_the_spec_says():
    S, T = 64, 9
    spec = ClipSpec.make("cat", "grass", "linear", "right", cx=0.5, cy=0.4, length=0.5, scale=0.3, n_frames=T, size=S)
    x, y, _ = _centroids(render_clip(spec, sprite_override=_disc_sprite(), background_override=BLACK))
    t = np.arange(T) / (T - 1)
    np.testing.assert_allclose(x, (0.5 + (t - 0.5) * 0.5) * S - 0.5, atol=0.05)  # by hand from the docs
    np.testing.assert_allclose(y, 0.4 * S - 0.5, atol=0.05)
    up = replace(spec, direction="up")
    x, y, _ = _centroids(render_clip(up, sprite_override=_disc_sprite(), background_override=BLACK))
    np.testing.assert_allclose(y, (0.4 - (t - 0.5) * 0.5) * S - 0.5, atol=0.05)
    np.testing.assert_allclose(x, 0.5 * S - 0.5, atol=0.05)


def test_circle_turns_clockwise_at_its_radius():
    S, T = 64, 17
    spec = ClipSpec.make("face", "bricks", "circle", "cw", cx=0.5, cy=0.5, radius=0.25, phase=0.0, scale=0.2,
                         n_frames=T, size=S)
    x, y, _ = _centroids(render_clip(spec, sprite_override=_disc_sprite(), background_override=BLACK))
    c = 0.5 * S - 0.5
    np.testing.assert_allclose(np.hypot(x - c, y - c), 0.25 * S, atol=0.1)
    ang = np.unwrap(np.arctan2(y - c, x - c))
    # y points down: clockwise on screen is increasing angle; one full turn over the clip
    assert np.all(np.diff(ang) > 0) and ang[-1] - ang[0] == pytest.approx(2 * np.pi, abs=0.02)


def test_zoom_grows_the_sprite():
    spec = ClipSpec.make("coin", "gravel", "zoom_in", cx=0.5, cy=0.5, scale=0.4, lo=0.5, hi=1.5, n_frames=5, size=64)
    _, _, mass = _centroids(render_clip(spec, sprite_override=_disc_sprite(), background_override=BLACK))
    side = np.sqrt(mass / 255.0)  # area ~ scale^2
    np.testing.assert_allclose(side / side[0], [1.0, 1.5, 2.0, 2.5, 3.0], rtol=0.03)


def test_pan_slides_the_background_and_the_flow_says_so():
    S, T = 32, 9  # length 0.5 -> 16 px over 8 steps = 2 px per frame
    spec = ClipSpec.make(None, "gravel", "pan", "right", length=0.5, bg_x=0.3, bg_y=0.6, n_frames=T, size=S)
    f = render_clip(spec).astype(int)
    for i in range(T - 1):  # camera right: content moves 2 px left
        assert np.array_equal(f[i + 1][:, :-2], f[i][:, 2:])
    flow = true_flow(spec)
    assert flow.shape == (T - 1, S, S, 2)
    np.testing.assert_allclose(flow[..., 0], -2.0)
    np.testing.assert_allclose(flow[..., 1], 0.0)


def test_true_flow_moves_sprite_pixels():
    spec = ClipSpec.make("digit", "stars", "linear", "down", cx=0.5, cy=0.5, length=0.5, n_frames=5, size=32)
    flow = true_flow(spec)
    _, alpha = render_clip(spec, return_alpha=True)
    on = alpha[0] > 0.5
    assert on.sum() > 20
    np.testing.assert_allclose(flow[0][on][:, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(flow[0][on][:, 1], 4.0, atol=1e-5)  # 16 px over 4 steps, downwards
    np.testing.assert_allclose(flow[0][~on], 0.0)


def test_same_motion_in_another_appearance():
    spec = ClipSpec.make("face", "bricks", "zigzag", "right", sprite_instance=3, n_frames=6, size=48)
    other = replace(spec, background="grass")
    a, alpha = render_clip(spec, return_alpha=True)
    b = render_clip(other)
    solid = alpha > 0.999
    assert solid.sum() > 100
    assert np.array_equal(a[solid], b[solid])  # the sprite is in the same place in both
    assert np.abs(a[~solid].astype(int) - b[~solid]).mean() > 10  # the background is not
    tr, tr2 = trajectory(spec), trajectory(other)
    assert np.array_equal(tr.x, tr2.x) and np.array_equal(tr.y, tr2.y)
    # another sprite, same path
    c = render_clip(replace(spec, sprite="cup", sprite_instance=0), background_override=BLACK)
    x, y, _ = _centroids(render_clip(spec, sprite_override=_disc_sprite(), background_override=BLACK))
    assert c.shape == a.shape
    np.testing.assert_allclose(x, tr.x, atol=0.05)
    np.testing.assert_allclose(y, tr.y, atol=0.05)


def test_render_is_pure_and_images_are_one_frame():
    spec = ClipSpec.make("astronaut", "stars", "static", n_frames=1, size=32)
    a, b = render_clip(spec), render_clip(spec)
    assert a.shape == (1, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert spec.is_image and caption(spec) == "a picture of an astronaut on stars"


@pytest.mark.parametrize("kw,msg", [
    (dict(sprite="cat", background="grass", motion="dance"), "unknown motion"),
    (dict(sprite="cat", background="grass", motion="linear", direction="cw"), "direction"),
    (dict(sprite="cat", background="mud", motion="static"), "unknown background"),
    (dict(sprite=None, background="grass", motion="circle", direction="cw"), "needs a sprite"),
    (dict(sprite="cat", background="grass", motion="static", params=(("radius", 1.0),)), "no parameter"),
])
def test_bad_specs_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ClipSpec(**kw)


# ---- writing safely --------------------------------------------------------------------------------

def test_refuses_a_foreign_folder_and_another_world(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="not empty"):
        make_world(foreign, seed=0, size="tiny")
    assert (foreign / "notes.txt").read_text() == "keep me"
    w = tmp_path / "w"
    make_world(w, seed=5, size="tiny")
    with pytest.raises(BadInputError, match="seed 5"):
        make_world(w, seed=6, size="tiny")
    # --force replaces it and leaves no file of the old world behind
    make_world(w, seed=6, size="tiny", force=True)
    assert load_ground_truth(w)["seed"] == 6
    df = pd.read_parquet(w / "train.parquet")
    assert {f"videos/{p.name}" for p in (w / "videos").iterdir()} == set(df.path[df.kind == "video"])


def test_rerun_resumes_and_is_idempotent(tmp_path):
    w = tmp_path / "w"
    make_world(w, seed=3, size="tiny")
    gt = load_ground_truth(w)
    before = {p.name: p.read_bytes() for p in (w / "videos").iterdir()}
    g = gt["duplicate_groups"][0]
    victim = w / f"videos/{g['ids'][0]}.mp4"
    victim.unlink()  # as if the run had been killed before writing it
    (w / "ground_truth.json").unlink()
    make_world(w, seed=3, size="tiny")
    assert load_ground_truth(w) == gt
    after = {p.name: p.read_bytes() for p in (w / "videos").iterdir()}
    assert after.keys() == before.keys()
    # the restored file decodes like its copies
    assert np.array_equal(read_frames(victim).array, read_frames(w / f"videos/{g['ids'][1]}.mp4").array)
    assert not list(w.rglob("*.tmp*"))
