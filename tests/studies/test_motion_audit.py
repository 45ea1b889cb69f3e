"""The motion audit on corpora whose motion relations are known by construction.

Acceptance (motion memorization issue): motion copied in another appearance is found, with the right
training item and offset; sub-clips too; still shots and camera pans over new content are not flagged
even though the training set holds many pans; near-duplicate training items count once.
"""
import numpy as np
import pytest

from diffmem.errors import DiffmemError, PolicyMismatchError
from diffmem.features.motion import MotionPolicy, describe_motion
from diffmem.flow import FlowPolicy
from diffmem.index.motion import MotionIndex, build_motion_index
from diffmem.studies.motion_audit import MotionAuditConfig, MotionAuditor, audit_motion, motion_match_html
from diffmem.world.synthetic import motion_corpus

CORPUS = dict(n_frames=10, n_sprites=8, n_duplicates=5, pan_directions=4, pans_per_direction=5, n_zooms=0,
              n_stills=2, n_copies=4, n_subclips=2, n_novel=4, n_new_pans=4, n_new_stills=2, n_new_zooms=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Train/generated clips, a motion index of the training set, and the true duplicate groups."""
    train, gen = motion_corpus(seed=1, **CORPUS)
    policy = MotionPolicy()
    cache, motions = {}, {}
    for c in train:  # byte-identical copies share one flow computation
        key = hash(c.frames.tobytes())
        if key not in cache:
            cache[key] = describe_motion(c.frames, policy)
        motions[c.id] = cache[key]
    index = MotionIndex.create(tmp_path_factory.mktemp("corpus") / "motion-index", policy, shard_size=100)
    for tid, m in motions.items():
        index.add(tid, m)
    index.close()
    groups = {c.id: c.id.split("_dup")[0] for c in train}
    auditor = MotionAuditor(index, MotionAuditConfig(policy=policy), groups)
    results = {c.id: auditor.score_frames(c.id, c.frames) for c in gen}
    return train, gen, index, groups, results


def test_motion_copied_in_another_appearance_is_found_with_item_and_offset(corpus):
    train, gen, _, groups, results = corpus
    copies = [c for c in gen if c.label == "motion"]
    assert len(copies) == 6 and any(c.offset > 0 for c in copies)
    for c in copies:
        r = results[c.id]
        assert r.motion_memorized, (c.id, r.raw_score)
        assert groups[r.motion_match.train_id] == c.source, (c.id, r.motion_match)
        assert r.motion_match.offset == c.offset, (c.id, r.motion_match)
        assert r.natural_motion["natural"] is False


def test_the_copies_share_no_content_with_their_source(corpus):
    # What makes this *motion* memorization: the copy's pixels differ from the source's everywhere
    # the sprite is not (other background) and inside it (other texture).
    train, gen, *_ = corpus
    src = {c.id: c for c in train}
    for c in gen:
        if c.label == "motion":
            a = src[c.source].frames[c.offset: c.offset + len(c.frames)].astype(float)
            b = c.frames.astype(float)
            corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
            assert abs(corr) < 0.3, (c.id, corr)


def test_still_shots_and_pans_over_new_content_are_natural(corpus):
    _, gen, _, _, results = corpus
    stills = [c for c in gen if c.kind == "still"]
    pans = [c for c in gen if c.kind == "pan"]
    assert stills and pans
    for c in stills:
        r = results[c.id]
        assert not r.motion_memorized and r.natural_motion["natural"] and r.natural_motion["reason"].startswith("static")
    for c in pans:
        r = results[c.id]
        assert r.raw_score > 0.95  # the pan *does* match training pans ...
        assert not r.motion_memorized  # ... but five distinct training items share it: natural
        assert r.natural_motion["natural"] and r.natural_motion["reason"].startswith("shared")
        assert all(not w.kept for w in r.windows)


def test_novel_trajectories_are_not_flagged(corpus):
    _, gen, _, _, results = corpus
    for c in gen:
        if c.kind == "sprite" and c.label == "none":
            assert not results[c.id].motion_memorized, (c.id, results[c.id].motion_score)


def test_precision_and_recall_on_the_corpus(corpus):
    _, gen, _, _, results = corpus
    tp = sum(results[c.id].motion_memorized and c.label == "motion" for c in gen)
    fp = sum(results[c.id].motion_memorized and c.label == "none" for c in gen)
    fn = sum(not results[c.id].motion_memorized and c.label == "motion" for c in gen)
    assert (tp, fp, fn) == (6, 0, 0)


def test_duplicates_of_one_source_count_once(corpus):
    # copy00 copies the training clip that has 5 byte-identical copies (6 items). Counted as 6 items,
    # its motion would look "shared" and be filtered; counted as one group it is found.
    train, gen, index, groups, results = corpus
    copy0 = next(c for c in gen if c.source == "sprite00" and c.offset == 0)
    assert results[copy0.id].motion_memorized
    ungrouped = MotionAuditor(index, MotionAuditConfig()).score_frames(copy0.id, copy0.frames)
    assert not ungrouped.motion_memorized
    assert ungrouped.natural_motion["reason"].startswith("shared: matches 6 distinct")


def test_too_short_and_single_image(corpus):
    _, gen, index, groups, _ = corpus
    auditor = MotionAuditor(index, MotionAuditConfig(), groups)
    r = auditor.score_frames("short", gen[0].frames[:3])  # 2 flows < k = 4
    assert r.motion_score is None and not r.motion_memorized and "too short" in r.natural_motion["reason"]
    r = auditor.score_frames("image", gen[0].frames[:1])
    assert r.n_flows == 0 and not r.motion_memorized


def test_policy_mismatch_is_refused(corpus):
    _, _, index, _, _ = corpus
    with pytest.raises(PolicyMismatchError, match="motion policy mismatch"):
        MotionAuditor(index, MotionAuditConfig(policy=MotionPolicy(flow=FlowPolicy("farneback"))))
    with pytest.raises(PolicyMismatchError, match="motion policy mismatch"):
        MotionIndex.create(index.folder, MotionPolicy(k=3))
    with pytest.raises(PolicyMismatchError):
        index.add("x", describe_motion(np.zeros((6, 16, 16, 3), np.uint8), MotionPolicy(k=3)))
    reopened = MotionIndex.open(index.folder)
    assert reopened.policy == index.policy and len(reopened) == len(index)
    assert len(index) == sum(10 - 1 - 4 + 1 for _ in index.train_ids)  # 6 windows per 10-frame clip


def test_search_widens_until_every_match_above_tau_is_seen(corpus):
    # With a first fetch of 1 neighbour, the search must still see all five pan groups of a direction.
    _, gen, index, groups, results = corpus
    pan = next(c for c in gen if c.kind == "pan")
    narrow = MotionAuditor(index, MotionAuditConfig(search_k=1), groups).score_frames(pan.id, pan.frames)
    assert [w.n_groups for w in narrow.windows] == [w.n_groups for w in results[pan.id].windows]
    assert min(w.n_groups for w in narrow.windows) >= 5


def test_html_fragment_shows_both_clips_and_flows(corpus):
    train, gen, _, _, results = corpus
    c = next(c for c in gen if c.label == "motion" and c.offset > 0)
    r = results[c.id]
    src = {t.id: t for t in train}[r.motion_match.train_id]
    html = motion_match_html(r, c.frames, src.frames, MotionPolicy())
    assert html.count("data:image/gif") == 4  # two clips + two flow animations
    assert html.count("data:image/png") == 2 * 4 + 1  # k flow images per video + the colour wheel
    assert f"training {r.motion_match.train_id}" in html and f"generated {c.id}" in html
    assert "<script" not in motion_match_html(
        type(r)(**{**r.__dict__, "item_id": "<script>x</script>"}), c.frames, src.frames)


def _clip_files(tmp_path):
    """Three training videos on disk (one a byte copy of another), an image, and a broken file."""
    from diffmem.data.manifest import Item
    from diffmem.io.video import write_video
    from diffmem.world.synthetic import random_trajectory, sprite_video

    rng = np.random.default_rng(5)
    items = []
    for name, seed in (("a", 0), ("b", 1)):
        frames, _ = sprite_video(random_trajectory(8, (48, 48), 12, rng), "disk", 12, (48, 48),
                                 sprite_seed=seed, background_seed=seed + 10)
        items.append(Item(name, write_video(tmp_path / f"{name}.mp4", frames, fps=8.0)))
    (tmp_path / "a_copy.mp4").write_bytes((tmp_path / "a.mp4").read_bytes())
    items.append(Item("a_copy", tmp_path / "a_copy.mp4"))
    from diffmem.io.video import write_image

    write_image(tmp_path / "pic.png", np.zeros((48, 48, 3), np.uint8))
    items.append(Item("pic", tmp_path / "pic.png", kind="image"))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    items.append(Item("broken", tmp_path / "broken.mp4"))
    return items


def test_index_and_audit_from_files_skip_bad_ones_and_resume(tmp_path, monkeypatch):
    from diffmem.index import motion as motion_index

    items = _clip_files(tmp_path)
    index, skipped = build_motion_index(items[:1], tmp_path / "idx")
    assert index.train_ids == ["a"]
    index, skipped = build_motion_index(items, tmp_path / "idx", shard_size=5)  # extends: a is not redone
    assert index.train_ids == ["a", "b", "a_copy"]  # the image has no motion; the broken file is reported
    assert [(s.id, "broken.mp4" in s.path) for s in skipped] == [("broken", True)]
    assert len(index) == 3 * (7 - 4 + 1)
    # Resume: everything is there (or recorded as skipped), so nothing is read or computed again.
    monkeypatch.setattr(motion_index, "describe_motion", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(motion_index, "read_motion_frames", lambda *a, **k: pytest.fail("re-read"))
    again, skipped2 = build_motion_index(items, tmp_path / "idx")
    assert len(again) == len(index) and [s.id for s in skipped2] == ["broken"]
    monkeypatch.undo()
    results, skipped = audit_motion(items, index, groups={"a_copy": "a"})
    assert set(results) == {"a", "b", "a_copy", "pic"} and [s.id for s in skipped] == ["broken"]
    assert results["a"].motion_score == pytest.approx(1.0, abs=1e-5) and results["a"].motion_match.offset == 0
    assert results["a"].motion_match.train_id in ("a", "a_copy")
    assert "too short" in results["pic"].natural_motion["reason"]


def test_a_worker_pool_builds_the_same_index(tmp_path):
    items = _clip_files(tmp_path)
    one, skipped1 = build_motion_index(items, tmp_path / "one", workers=1)
    two, skipped2 = build_motion_index(items, tmp_path / "two", workers=2)
    assert one.train_ids == two.train_ids and [s.id for s in skipped1] == [s.id for s in skipped2] == ["broken"]
    a, b = one.index.vectors(), two.index.vectors()
    assert a.shape == b.shape and np.array_equal(a, b)


def test_a_background_build_makes_the_same_index_and_is_skipped_when_complete(tmp_path):
    from diffmem.index.motion import start_motion_index

    items = _clip_files(tmp_path)
    one, _ = build_motion_index(items, tmp_path / "one", workers=1)
    job = start_motion_index(items, tmp_path / "bg", MotionPolicy(), busy_cores=1)
    assert job is not None and job.result() is None
    bg = MotionIndex.open(tmp_path / "bg")
    assert bg.train_ids == one.train_ids and np.array_equal(bg.index.vectors(), one.index.vectors())
    assert start_motion_index(items, tmp_path / "bg", MotionPolicy()) is None  # complete: nothing to start
    job = start_motion_index(items, tmp_path / "bg", MotionPolicy(fps=4.0))  # another policy in that folder
    with pytest.raises(DiffmemError):
        job.result()


def test_content_duplicate_groups_from_the_content_index(tmp_path):
    from diffmem.data.manifest import Manifest
    from diffmem.index import build_content_index
    from diffmem.studies.motion_audit import content_duplicate_groups

    items = [it for it in _clip_files(tmp_path) if it.id != "broken"]
    rep = build_content_index(Manifest(items=items, skipped=[], root=tmp_path), tmp_path / "cidx", progress=False)
    groups = content_duplicate_groups(rep.index, threshold=0.95)
    assert groups == {"a": "a", "b": "b", "a_copy": "a", "pic": "pic"}


def test_world_clip_rerendered_in_another_appearance_is_motion(tmp_path):
    """The embedded world's own renderer: a bounce re-drawn with the same trajectory and sprite shape but
    other colours over another background is found as motion, full and from frame 4; a pan over new
    content and a still shot are natural (the training set holds six pans of that direction)."""
    W = pytest.importorskip("diffmem.world")
    policy = MotionPolicy()
    sources = [W.ClipSpec.make("cat", "bricks", "bounce", "right"), W.ClipSpec.make("rocket", "gravel", "bounce", "left")]
    train = {"bounce_cat": sources[0], "bounce_cat_dup": sources[0], "bounce_rocket": sources[1]}
    for j, bg in enumerate(W.BACKGROUNDS):
        train[f"pan{j}"] = W.ClipSpec.make(None, bg, "pan", "right", bg_y=j / 6)
    train["circle"] = W.ClipSpec.make("face", "grass", "circle", "cw")
    cache = {}
    motions = {}
    for tid, spec in train.items():
        if spec not in cache:
            cache[spec] = describe_motion(W.render_clip(spec), policy)
        motions[tid] = cache[spec]
    index = MotionIndex.create(tmp_path / "idx", policy)
    for tid, m in motions.items():
        index.add(tid, m)
    index.close()
    groups = {t: t.replace("_dup", "") for t in train}
    auditor = MotionAuditor(index, MotionAuditConfig(policy=policy), groups)

    def redraw(spec, inverted, background):
        sp = W.load_sprite(spec.sprite, spec.sprite_instance)
        rgb = 1 - sp.rgb if inverted else sp.rgb[..., [2, 0, 1]]
        return W.render_clip(spec, sprite_override=np.dstack([rgb, sp.alpha]),
                             background_override=W.load_texture(background, W.texture_side(spec.size)))

    cat = redraw(sources[0], True, "stars")
    rocket = redraw(sources[1], False, "grass")
    for name, frames, source, offset in (("cat", cat, "bounce_cat", 0), ("cat-late", cat[4:], "bounce_cat", 4),
                                         ("rocket", rocket, "bounce_rocket", 0)):
        r = auditor.score_frames(name, frames)
        assert r.motion_memorized, (name, r.raw_score)
        assert groups[r.motion_match.train_id] == source and r.motion_match.offset == offset, (name, r.motion_match)
    pan = auditor.score_frames("pan", W.render_clip(W.ClipSpec.make("cup", "cells", "pan", "right")))
    assert not pan.motion_memorized and pan.natural_motion["reason"].startswith("shared")
    still = auditor.score_frames("still", W.render_clip(W.ClipSpec.make("cup", "cells", "static")))
    assert not still.motion_memorized and still.natural_motion["reason"].startswith("static")


@pytest.mark.slow
def test_audit_end_to_end_with_the_motion_part(tmp_path):
    """`diffmem.studies.audit.audit` with the motion part: verdicts content / motion / both / none,
    the motion fields in audit.json and audit.parquet, the motion match in report.html, and resume."""
    import json

    import pandas as pd

    from diffmem.data.manifest import Item, write_manifest
    from diffmem.io.video import write_video
    from diffmem.studies.audit import audit
    from diffmem.world.synthetic import camera_video, random_trajectory, sprite_video, still_video

    rng = np.random.default_rng(11)
    (tmp_path / "train").mkdir()
    (tmp_path / "gen").mkdir()
    trajs, train, gen = {}, [], []

    def put(folder, name, frames, items):
        items.append(Item(name, write_video(tmp_path / folder / f"{name}.mp4", frames, fps=8.0)))

    for i in range(3):
        trajs[i] = random_trajectory(10, (64, 64), 14, rng)
        put("train", f"sprite{i}", sprite_video(trajs[i], "cross", 14, (64, 64), sprite_seed=i,
                                                background_seed=50 + i)[0], train)
    for j in range(5):
        put("train", f"pan{j}", camera_video("translate", (1.5, 0.1 * j), 10, (64, 64), seed=100 + j)[0], train)
    put("train", "still", still_video(10, (64, 64), seed=200), train)
    put("gen", "motion_copy", sprite_video(trajs[1], "cross", 14, (64, 64), sprite_seed=77, background_seed=78)[0], gen)
    put("gen", "exact_copy", sprite_video(trajs[2], "cross", 14, (64, 64), sprite_seed=2, background_seed=52)[0], gen)
    put("gen", "new_pan", camera_video("translate", (1.2, 0.2), 10, (64, 64), seed=300)[0], gen)
    put("gen", "new_still", still_video(10, (64, 64), seed=301), gen)
    put("gen", "content_only", np.repeat(
        sprite_video(trajs[0], "cross", 14, (64, 64), sprite_seed=0, background_seed=50)[0][:1], 10, axis=0), gen)
    write_manifest(train, tmp_path / "train.csv")
    write_manifest(gen, tmp_path / "gen.csv")

    out = tmp_path / "out"
    result = audit(tmp_path / "gen.csv", tmp_path / "train.csv", out, motion=MotionAuditConfig(), progress=False)
    by_id = {r["id"]: r for r in result.items}
    assert {k: by_id[k]["verdict"] for k in by_id} == {
        "motion_copy": "motion", "exact_copy": "both", "new_pan": "none", "new_still": "none",
        "content_only": "content"}
    m = by_id["motion_copy"]
    assert m["motion_memorized"] and m["motion_match"]["train_id"] == "sprite1" and m["motion_match"]["offset"] == 0
    assert not m["content_memorized"]
    assert by_id["new_pan"]["natural_motion"]["natural"] and by_id["new_pan"]["natural_motion"]["reason"].startswith("shared")
    assert by_id["new_still"]["natural_motion"]["reason"].startswith("static")
    saved = json.loads((out / "audit.json").read_text())
    assert saved["config"]["motion"]["policy_fingerprint"] == MotionPolicy().fingerprint
    assert saved["config"]["motion"]["n_duplicate_groups"] == 9  # the 9 training videos are all distinct
    assert saved["summary"]["verdicts"] == {"content": 1, "motion": 1, "both": 1, "none": 2}
    table = pd.read_parquet(out / "audit.parquet").set_index("id")
    assert bool(table.loc["motion_copy", "motion_memorized"])
    assert json.loads(table.loc["motion_copy", "motion_match"])["train_id"] == "sprite1"
    assert (out / "motion_index" / "index.json").exists()
    html = (out / "report.html").read_text()
    assert "motion: motion_copy &harr; sprite1" in html and "motion: exact_copy &harr; sprite2" in html
    assert html.count("class='motion-match'") == 2  # only the motion-flagged items get the flow block
    # Resume: a second run (here against the saved content index) reuses every stored item.
    again = audit(tmp_path / "gen.csv", out / "train_index", out, motion=MotionAuditConfig(), progress=False,
                  report=False)
    assert [r["verdict"] for r in again.items] == [r["verdict"] for r in result.items]
    assert audit(tmp_path / "gen.csv", out / "train_index", out, motion=False, progress=False, report=False).items[0].get(
        "motion_score") is None  # content only: no motion fields, and the stored items were not reused


def test_audit_command_line_motion_flags():
    from diffmem.cli import build_parser
    from diffmem.cli.audit import _motion_config

    parser = build_parser()
    cfg = _motion_config(parser.parse_args(["audit", "g", "t", "--out", "o"]))
    assert cfg == MotionAuditConfig()  # motion is on by default, with the documented defaults
    cfg = _motion_config(parser.parse_args(["audit", "g", "t", "--out", "o", "--flow", "farneback", "--motion-k", "3",
                                            "--motion-threshold", "0.8"]))
    assert (cfg.policy.flow.backend, cfg.policy.k, cfg.nmf.tau_m) == ("farneback", 3, 0.8)
    assert _motion_config(parser.parse_args(["audit", "g", "t", "--out", "o", "--no-motion"])) is False  # content only


def test_a_low_frame_rate_copy_is_audited_at_its_own_rate(tmp_path):
    """A 4 fps sample of an 8 fps training clip's motion, in another appearance. At the policy's 8 fps every
    frame repeats, so every other flow is zero and the windows cannot match; the audit now compares motion
    at the sample's own rate (performance issue, item 3; `diffmem extract` already did)."""
    from diffmem.data.manifest import Item
    from diffmem.features.motion import read_motion_frames, repeated_pairs
    from diffmem.io.video import write_video
    from diffmem.studies.audit import audit
    from diffmem.studies.motion_audit import at_rate, lowest_rate
    from diffmem.world import ClipSpec, load_sprite, load_texture, render_clip, texture_side

    spec = ClipSpec.make("cat", "bricks", "bounce", "right", size=64, n_frames=16, fps=8.0)
    (tmp_path / "train").mkdir()
    write_video(tmp_path / "train" / "bounce.mp4", render_clip(spec), fps=8)
    for j, bg in enumerate(("grass", "stars", "gravel")):  # other motions, so the bounce stays specific
        write_video(tmp_path / "train" / f"pan{j}.mp4", render_clip(ClipSpec.make(None, bg, "pan", "left", size=64,
                                                                                  n_frames=16, fps=8.0)), fps=8)
    sp = load_sprite(spec.sprite, spec.sprite_instance)
    other = render_clip(spec, sprite_override=np.dstack([1 - sp.rgb, sp.alpha]),
                        background_override=load_texture("stars", texture_side(spec.size)))
    (tmp_path / "gen").mkdir()
    write_video(tmp_path / "gen" / "copy4fps.mp4", other[::2], fps=4)  # the same motion, every other frame
    assert lowest_rate([Item("c", tmp_path / "gen" / "copy4fps.mp4")]) == pytest.approx(4.0)
    assert at_rate(MotionAuditConfig(), 4.0).policy.fps == 4.0 and at_rate(MotionAuditConfig(), 12.0) == MotionAuditConfig()
    res = audit(tmp_path / "gen", tmp_path / "train", tmp_path / "out", progress=False, report=False)
    rec = res.items[0]
    assert res.config["motion"]["policy"]["fps"] == 4.0
    assert rec["motion_memorized"] and rec["motion_match"]["train_id"] == "bounce", rec.get("motion_score")
    # counted: 7 flows between 8 distinct frames, none between a frame and itself; at the policy's 8 fps the
    # same file gives 16 samples of 8 frames, every other pair a frame and itself
    assert (res.summary["motion_flow_pairs"], res.summary["motion_repeated_pairs"]) == (7, 0)
    frames, idx = read_motion_frames(tmp_path / "gen" / "copy4fps.mp4", MotionAuditConfig().policy, with_indices=True)
    assert len(frames) == 16 and repeated_pairs(idx) == 8
