"""AMG's evaluation study and command, on a toy memorizer and on a random tiny model."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffmem import cli
from diffmem.errors import BadInputError, DiffmemError
from diffmem.guidance.config import AMGConfig
from diffmem.guidance.hook import write_traces
from diffmem.guidance.reference import TrainingReference, build_amg_hook
from diffmem.io.video import read_frames
from diffmem.models.tiny import TinyConfig, TinyModel, build_vocab, save_tiny
from diffmem.studies.amg import EvalConfig, evaluate_amg
from diffmem.studies.amg_report import amg_report, amg_table
from diffmem.studies.generate import GenerateConfig, generate
from diffmem.world import make_world

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guidance"))
from _amg_toy import DUP, NOVEL, Memorizer, write_toy_training_set  # noqa: E402

# two training sources are too few for thresholds from the training set's own similarity quantiles
TOY_AMG = AMGConfig(content_lambda=(0.5, 0.6))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return root, Memorizer(write_toy_training_set(root))


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


def test_amg_table_by_hand():
    rows = [{"variant": "b", "content_score": s, "group": g, "role": None, "content_memorized": s > 0.5}
            for s, g in ((0.9, "duplicated_video"), (0.6, "duplicated_video"), (0.2, "novel"), (0.1, "novel"))]
    (t,) = amg_table(rows, tau_c=0.5, tau_m=0.8)
    assert t["top1"] == 0.9 and t["pct_above_tau"] == 50.0 and t["dup_content_memorized_pct"] == 100.0
    assert t["top5"] == pytest.approx(np.percentile([0.9, 0.6, 0.2, 0.1], 95))


def test_generate_with_the_hook_and_report(toy, tmp_path):
    root, adapter = toy
    ref = TrainingReference.build(root, fps=8.0)
    hook = build_amg_hook(ref, TOY_AMG, kind="video")
    settings = GenerateConfig(n=1, steps=6, guidance=3.0)
    generate(adapter, [DUP, NOVEL], tmp_path, settings, hooks=[hook], progress=False)
    assert write_traces(hook, tmp_path) == 2
    path = amg_report(tmp_path, adapter, settings)
    html = path.read_text()
    assert "without AMG" in html and "never triggered" in html and "&lt;" not in DUP


@pytest.mark.slow
def test_cli_amg_evaluate_on_a_random_tiny_model_and_world(tmp_path):
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


def test_a_bad_inception_file_is_refused_before_any_sample(tmp_path):
    """`amg evaluate --inception notes.pdf` failed only after generating every variant (reliability issue)."""
    from diffmem.errors import BadInputError
    from diffmem.studies.amg import evaluate_amg

    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4 not a network")
    with pytest.raises(BadInputError, match="notes.pdf"):
        evaluate_amg("builtin:tiny-t2v", ["a cat moves right across grass"], tmp_path / "no-index", tmp_path / "out",
                     inception=tmp_path / "notes.pdf")
    assert not (tmp_path / "out" / "variants").exists()


def test_the_other_mitigations_run_on_the_same_prompts_and_seeds(toy, tmp_path):
    # one table with plain sampling, Jain et al.'s opposite guidance and Wen et al.'s embedding optimisation;
    # each variant's generation.json records its rule, and the samples differ from plain sampling's
    root, adapter = toy
    cfg = EvalConfig(n=1, steps=5, guidance=3.0, variants=("baseline", "jain-opposite-2025", "wen-2024"), amg=TOY_AMG)
    res = evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path, cfg)
    assert [r["variant"] for r in res["table"]] == ["baseline", "jain-opposite-2025", "wen-2024"]
    gen = json.loads((tmp_path / "variants" / "jain-opposite-2025" / "generation.json").read_text())
    assert gen["extra_settings"]["mitigation"] == {"rule": "static transition", "tau": 650, "w_before": -2.0}
    wen = json.loads((tmp_path / "variants" / "wen-2024" / "generation.json").read_text())["extra_settings"]
    assert wen["mitigation"]["lr"] == 0.05 and wen["mitigation"]["iters"] == 10
    assert wen["mitigation"]["mean_loss_after"] <= wen["mitigation"]["mean_loss_before"]
    rows = pd.read_parquet(tmp_path / "amg_samples.parquet")
    by = {v: read_frames(rows[(rows.variant == v)].sort_values("id").iloc[0]["path"]).array.astype(int)
          for v in ("baseline", "jain-opposite-2025")}
    assert np.abs(by["baseline"] - by["jain-opposite-2025"]).mean() > 0


@pytest.mark.slow
def test_guarded_variant_measures_only_what_the_guard_flags(toy, tmp_path):
    from diffmem.detect.calibrate import Calibration, DetectConfig

    root, toy_adapter = toy
    # the novel prompt gets the empty prompt's embedding (magnitude exactly 0), the duplicated one its pattern
    adapter = Memorizer({k: v for k, v in toy_adapter.patterns.items() if k != NOVEL})
    cfg = EvalConfig(n=1, steps=5, guidance=3.0, variants=("full", "guarded"), amg=TOY_AMG)
    with pytest.raises(DiffmemError, match="guarded.*--guard"):
        evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path / "none", cfg)
    assert not (tmp_path / "none" / "variants").exists()  # refused before any sample
    cal = Calibration(model="test:memorizer", settings=DetectConfig(seeds=1, steps=1, num_steps=5), fpr=0.01,
                      thresholds={"content": 1e-6}).save(tmp_path / "cal.json")
    evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path / "g", cfg, guard=cal)
    rows = pd.read_parquet(tmp_path / "g" / "amg_samples.parquet").set_index(["variant", "group"])
    # flagged at step 0: the duplicated prompt's sample is full AMG's, step for step
    assert rows.loc[("guarded", "duplicated_video"), "content_score"] == pytest.approx(
        rows.loc[("full", "duplicated_video"), "content_score"], abs=1e-6)
    assert rows.loc[("guarded", "duplicated_video"), "amg_triggered_steps"] > 0
    # the novel one is never measured (full AMG measures it at every step)
    assert pd.isna(rows.loc[("guarded", "novel"), "amg_sigma_content_max"])
    assert rows.loc[("full", "novel"), "amg_sigma_content_max"] is not None
    run = json.loads((tmp_path / "g" / "variants" / "guarded" / "generation.json").read_text())
    assert run["extra_settings"]["amg"]["guard"]["thresholds"] == {"content": 1e-6}
    # SAIL's diffmem setting takes its target from the calibration's wen threshold, which this one lacks
    with pytest.raises(DiffmemError, match="sail"):
        evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path / "s", EvalConfig(variants=("sail",)))
    with pytest.raises(BadInputError, match="cal.json.*'wen'"):
        evaluate_amg(adapter, root / "prompts.jsonl", root, tmp_path / "s", EvalConfig(variants=("sail",)), guard=cal)
    assert not (tmp_path / "s" / "variants").exists()
