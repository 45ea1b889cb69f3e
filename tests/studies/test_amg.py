"""AMG's evaluation study and command, on a toy memorizer and on a random tiny model."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffmem.errors import DiffmemError
from diffmem.io.video import write_video
from diffmem.studies.amg import (AMGSettings, EvalConfig, TrainingReference, amg_report, amg_table, build_amg_hook,
                                 evaluate_amg, write_traces)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guidance"))
from _amg_toy import Memorizer, frames_of, smooth_pattern  # noqa: E402

DUP, OTHER, NOVEL = "a cat on grass", "a dog on sand", "a cup on wood"
# two training sources are too few for thresholds from the training set's own similarity quantiles
TOY_AMG = AMGSettings(content_lambda=(0.5, 0.6))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    pats = {DUP: smooth_pattern(1), OTHER: smooth_pattern(2), NOVEL: smooth_pattern(5)}
    rows = []
    for cap, copies in ((DUP, 3), (OTHER, 1)):
        for c in range(copies):
            vid = f"v{len(rows)}"
            write_video(root / f"{vid}.mp4", frames_of(pats[cap]), fps=8.0)
            rows.append({"id": vid, "path": f"{vid}.mp4", "caption": cap, "kind": "video"})
    pd.DataFrame(rows).to_parquet(root / "train.parquet")
    with open(root / "prompts.jsonl", "w") as f:
        f.write(json.dumps({"prompt": DUP, "group": "duplicated_video"}) + "\n")
        f.write(json.dumps({"prompt": NOVEL, "group": "novel"}) + "\n")
    return root, Memorizer(pats)


def test_training_reference_and_cache(toy, tmp_path):
    root, _ = toy
    ref = TrainingReference.build(root, fps=8.0, cache=tmp_path)
    assert sorted(set(ref.ids)) == ["v0", "v1", "v2", "v3"] and len(ref.ids) == 16
    assert ref.groups["v0"] == ref.groups["v1"] == ref.groups["v2"] != ref.groups["v3"]  # byte-identical copies
    again = TrainingReference.build(root, fps=8.0, cache=tmp_path)  # from the cache file
    assert np.array_equal(again.vectors, ref.vectors) and again.groups == ref.groups and again.ids == ref.ids
    frames = frames_of(smooth_pattern(1))
    s = ref.content_score(frames)
    assert s["content_score"] > 0.95 and s["content_item_caption"] == DUP


@pytest.mark.slow
def test_evaluate_writes_the_table_and_resumes(toy, tmp_path):
    root, adapter = toy
    cfg = EvalConfig(n=1, steps=5, guidance=3.0, variants=("baseline", "full"), amg=TOY_AMG)
    res = evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path, cfg)
    tab = {r["variant"]: r for r in res["table"]}
    assert set(tab) == {"baseline", "full"} and tab["baseline"]["n"] == 2
    assert res["table"][0]["quality_metric"] == "FD-builtin"
    # the toy copies its duplicated clip; AMG lowers the content scores of those samples
    assert tab["baseline"]["dup_content_memorized_pct"] == 100.0
    rows = pd.read_parquet(tmp_path / "amg_samples.parquet")
    from diffmem.io.video import read_frames
    fr = read_frames(rows.iloc[0]["path"]).array.astype(int)
    by_pair = [np.abs(fr[i + 1] - fr[i]).mean() for i in range(len(fr) - 1)]  # flicker, pair by pair
    assert rows.iloc[0]["flicker"] == pytest.approx(np.mean(by_pair), rel=1e-5)
    assert tab["baseline"]["flicker"] == pytest.approx(rows[rows.variant == "baseline"]["flicker"].mean(), rel=1e-6)
    dup = rows[rows.group == "duplicated_video"].groupby("variant")["content_score"].mean()
    assert dup["full"] < dup["baseline"]
    # novel prompts never trigger: their samples are the baseline's, file for file
    nov = rows[rows.group == "novel"]
    assert (nov[nov.variant == "full"]["amg_triggered_steps"] == 0).all()
    assert tab["full"]["novel_triggered_pct"] == 0.0
    base = nov[nov.variant == "baseline"].set_index("id")["content_score"]
    full = nov[nov.variant == "full"].set_index("id")["content_score"]
    assert np.allclose(base.sort_index(), full.sort_index())
    for f in ("amg_table.json", "amg_table.parquet", "amg_report.html"):
        assert (tmp_path / f).is_file()
    html = (tmp_path / "amg_report.html").read_text()
    assert "FD-builtin" in html and "a cat on grass" in html
    trace = json.loads(next((tmp_path / "variants" / "full" / "samples").glob("*.amg.json")).read_text())
    assert set(trace) == {"summary", "trace", "config"}
    # second run: nothing regenerated
    again = evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path, cfg)
    assert again["table"] == res["table"]
    with pytest.raises(DiffmemError, match="unknown AMG variants"):
        evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path, EvalConfig(variants=("nope",)))


def test_thresholds_follow_tau_c(toy):
    from _amg_toy import RandomDescriptor

    root, _ = toy
    ref = TrainingReference.build(root, fps=8.0, descriptor=RandomDescriptor(threshold=None))  # not calibrated
    other = ref.other_source_similarities()
    # 4 clips of 4 frames: the 12 frames of the triplicated cat have the dog as other source and vice versa
    assert len(other) == 16 and other.max() < 0.9
    assert ref.tau_c == pytest.approx(np.quantile(other, 0.99)) and "not calibrated" in ref.tau_c_source
    hook = build_amg_hook(ref, AMGSettings(content_lo=0.9, content_hi=0.95), kind="video")
    lam = dict(hook.config.schedules)["content"]
    tau = np.quantile(other, 0.99)
    assert lam(0, 1000) == pytest.approx(0.95 * tau) and lam.lo == pytest.approx(0.9 * tau)


def test_amg_table_by_hand():
    rows = [{"variant": "b", "content_score": s, "group": g, "role": None, "content_memorized": s > 0.5}
            for s, g in ((0.9, "duplicated_video"), (0.6, "duplicated_video"), (0.2, "novel"), (0.1, "novel"))]
    (t,) = amg_table(rows, tau_c=0.5, tau_m=0.8)
    assert t["top1"] == 0.9 and t["pct_above_tau"] == 50.0 and t["dup_content_memorized_pct"] == 100.0
    assert t["top5"] == pytest.approx(np.percentile([0.9, 0.6, 0.2, 0.1], 95))


def test_generate_with_the_hook_and_report(toy, tmp_path):
    from diffmem.studies.generate import GenerateSettings, generate

    root, adapter = toy
    ref = TrainingReference.build(root, fps=8.0)
    hook = build_amg_hook(ref, TOY_AMG, kind="video")
    settings = GenerateSettings(n=1, steps=6, guidance=3.0)
    generate(adapter, [DUP, NOVEL], tmp_path, settings, hooks=[hook], progress=False)
    assert write_traces(hook, tmp_path) == 2
    path = amg_report(tmp_path, adapter, settings)
    html = path.read_text()
    assert "without AMG" in html and "never triggered" in html and "&lt;" not in DUP


def test_traces_of_finished_batches_survive_a_kill(toy, tmp_path):
    """Traces are written batch by batch: a run killed in its second batch keeps the first batch's."""
    from diffmem.studies.generate import GenerateSettings, generate

    root, adapter = toy
    hook = build_amg_hook(TrainingReference.build(root, fps=8.0), TOY_AMG, kind="video")
    settings = GenerateSettings(n=1, steps=4, guidance=3.0)
    batches = []

    def after(rows):
        batches.append(write_traces(hook, tmp_path, rows))
        if len(batches) == 1:
            raise KeyboardInterrupt  # killed right after the first batch was written

    with pytest.raises(KeyboardInterrupt):
        generate(adapter, [DUP, NOVEL], tmp_path, settings, batch_size=1, hooks=[hook], after_batch=after,
                 progress=False)
    traces = sorted(p.name for p in (tmp_path / "samples").glob("*.amg.json"))
    assert batches == [1] and len(traces) == 1
    first = json.loads((tmp_path / "samples" / traces[0]).read_text())
    assert len(first["trace"]["step"]) == 4  # every step of the finished sample

@pytest.mark.slow
def test_motion_proxy_tracks_ofs_k_on_world_clips():
    from diffmem.studies.amg import proxy_agreement

    r = proxy_agreement(1, seed=3)  # 10 clips, one per world motion, at the tiny model's 32 px, 8 frames
    assert r["pairs"] >= 60
    # measured with 3 clips per motion: Pearson 0.96 proxy-vs-DIS windows (what sigma_t uses)
    # (seeds 0-3 with one clip per motion: Pearson 0.90-0.95, Spearman 0.72-0.94)
    assert r["pearson_proxy_vs_dis"] > 0.85 and r["spearman_proxy_vs_dis"] > 0.6


@pytest.mark.slow
def test_cli_amg_evaluate_on_a_random_tiny_model_and_world(tmp_path):
    from diffmem import cli
    from diffmem.world import make_world
    from diffmem.models.tiny import TinyConfig, TinyModel, build_vocab, save_tiny

    world = tmp_path / "world"
    make_world(world, seed=0, size="tiny")
    recs = [json.loads(x) for x in (world / "prompts.jsonl").read_text().splitlines()]
    pick = [next(r for r in recs if r["group"] == "duplicated_video"), next(r for r in recs if r["group"] == "novel")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pick))
    train = pd.read_parquet(world / "train.parquet")
    torch.manual_seed(0)
    cfg = TinyConfig(channels=(8, 16), blocks=1, vocab=build_vocab(list(train["caption"]) + [r["prompt"] for r in pick]))
    save_tiny(TinyModel(cfg), tmp_path / "model")
    out = tmp_path / "out"
    rc = cli.main(["amg", "evaluate", str(tmp_path / "model"), "--prompts", str(tmp_path / "p.jsonl"), "--index",
                   str(world), "--out", str(out), "--n", "1", "--steps", "2", "--ablations", "baseline", "full"])
    assert rc == 0
    res = json.loads((out / "amg_table.json").read_text())
    assert [r["variant"] for r in res["table"]] == ["baseline", "full"]
    assert res["alignment"]["metric"] == "world alignment"  # world captions: the world's own alignment check
    assert all(r["aligned_pct"] is not None and r["quality_metric"] == "FD-builtin" for r in res["table"])
    # `diffmem generate --amg --index --amg-report`
    gen = tmp_path / "gen"
    assert cli.main(["generate", str(tmp_path / "model"), "--prompts", str(tmp_path / "p.jsonl"), "--out", str(gen),
                     "--n", "1", "--steps", "2", "--amg", "--index", str(world), "--amg-report"]) == 0
    assert len(list((gen / "samples").glob("*.amg.json"))) == 2 and (gen / "amg_report.html").is_file()
    assert json.loads((gen / "generation.json").read_text())["extra_settings"]["amg"]["similarities"][0] == "content"
    assert cli.main(["generate", str(tmp_path / "model"), "--prompts", str(tmp_path / "p.jsonl"), "--out",
                     str(tmp_path / "g2"), "--amg"]) == 1  # --amg without --index
    # a bad training set is a clear error, not a traceback
    assert cli.main(["amg", "evaluate", str(tmp_path / "model"), "--prompts", str(tmp_path / "p.jsonl"),
                     "--index", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "o2")]) == 1


def test_content_index_as_the_training_set(toy, tmp_path):
    from diffmem.index import build_content_index
    from diffmem.studies.amg import IndexNeighbours

    root, _ = toy
    build_content_index(root / "train.parquet", tmp_path / "ix", descriptor="builtin", fps=8.0, progress=False)
    ref = TrainingReference.build(tmp_path / "ix", fps=8.0, cache=tmp_path / "c")
    assert isinstance(ref.neighbours, IndexNeighbours)
    assert sorted(ref.item_captions) == ["v0", "v1", "v2", "v3"]  # items (paths, captions) from the index
    s = ref.content_score(frames_of(smooth_pattern(2)))
    assert s["content_score"] > 0.95 and s["content_item"] == "v3" and s["content_item_caption"] == OTHER
    scores, rows = ref.neighbours.search(ref.vectors[:2], 1)
    assert np.allclose(ref.neighbours.vectors(rows[:, 0]), ref.vectors[:2], atol=1e-5)
