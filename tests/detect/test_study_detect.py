"""The detect study end to end on the hand-built denoiser: scores, flags, calibration, evaluation, resume."""
import json
import math

import pandas as pd
import pytest
import torch
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.calibrate import Calibration, DetectConfig
from diffmem.errors import PolicyMismatchError
from diffmem.studies.detect import run_detect

S = DetectConfig(seeds=2, steps=2, num_steps=10)


def _world():
    # memorized content: scaled frame-constant patterns; memorized motion: alternating; novel: tiny noise
    g = torch.Generator().manual_seed(0)
    pats = {}
    for k in range(4):
        pats[f"copy {k}"] = frame_constant() * (1 + k / 4)
        pats[f"move {k}"] = alternating(a=1.5 + k / 4)
    for k in range(12):
        pats[f"novel {k}"] = 0.1 * torch.randn(2, 4, 3, 3, generator=g)
    return pats


def _labels(tmp_path, pats):
    lines = []
    for p in pats:
        kind = "content" if p.startswith("copy") else ("motion" if p.startswith("move") else "none")
        lines.append(json.dumps({"prompt": p, "memorized": kind != "none", "kind": kind}))
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scores_flags_evaluation_and_outputs(tmp_path):
    pats = _world()
    ad = KnownAdapter(pats, mode="t")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(pats) + "\n<script>alert(1)</script>\n")
    novel = [p for p in pats if p.startswith("novel")]
    # calibrate on the novel prompts
    cal_dir = tmp_path / "cal"
    run_detect(ad, novel, cal_dir, settings=S, calibrate_fpr=0.1, progress=False)
    cal = Calibration.load(cal_dir / "calibration.json")
    assert cal.model == "test:known" and cal.settings == S

    out = tmp_path / "out"
    s = run_detect(ad, prompts, out, calibration=cal_dir / "calibration.json", labels=_labels(tmp_path, pats),
                   progress=False)
    df = pd.read_parquet(out / "detect.parquet")
    assert len(df) == len(pats) + 1
    # D = P * t / 1000 at t = 900, 800 -> factor 0.85, the same for every seed
    r = df.set_index("prompt")
    assert r.loc["copy 0", "content"] == pytest.approx(0.85 * math.sqrt(12.5), rel=1e-5)
    assert r.loc["move 0", "motion"] == pytest.approx(0.85 * 1.5, rel=1e-5)
    assert r.loc["move 0", "content"] == pytest.approx(0.0, abs=1e-6)
    assert r.loc["copy 3", "flag_content"] and not r.loc["copy 3", "flag_motion"]
    assert r.loc["move 1", "flag_motion"] and r.loc["move 1", "flagged"]
    assert not r.loc["<script>alert(1)</script>", "flagged"]  # unknown prompt: D = 0
    assert (df["denoiser_evals"] == 2 * 2 * 2).all()
    assert df["cost_fraction"].iloc[0] == pytest.approx(8 / 20)
    ev = s["evaluation"]
    assert ev["memorized"]["total"]["auc"] == 1.0
    # content magnitude does not see motion copies, motion does not see content copies
    assert ev["content"]["content"]["auc"] == 1.0 and ev["motion"]["motion"]["auc"] == 1.0
    assert ev["motion"]["content"]["auc"] < 0.5
    grid = [g for g in s["evaluation_grid"] if g["set"] == "memorized"]
    assert [(g["seeds"], g["steps"]) for g in grid] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    # s = 1 shares eps(x_T, "") among the 21 distinct prompts: n (1 + 1/21) evaluations per prompt
    assert grid[0]["cost_fraction"] == pytest.approx((1 + 1 / 21) / 20)
    assert grid[-1]["cost_fraction"] == pytest.approx(8 / 20)
    assert {g["set"] for g in s["evaluation_grid"]} == {"memorized", "content", "motion"}
    steps = pd.read_parquet(out / "steps.parquet")
    assert len(steps) == (len(pats) + 1) * 2 * 2
    html = (out / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"]["thresholds"] == cal.thresholds


def test_cost_is_what_the_denoiser_actually_ran(tmp_path):
    ad = KnownAdapter({"a": frame_constant()})
    run_detect(ad, ["a", "b", "c", "a"], tmp_path, settings=DetectConfig(seeds=3, steps=2, num_steps=10),
               progress=False)
    assert ad.rows_evaluated == 3 * 3 * 2 * 2  # 3 distinct prompts, 3 seeds, 2 steps, cond + uncond
    ad.rows_evaluated = 0
    s = run_detect(ad, ["a", "b", "c", "a"], tmp_path / "s1", settings=DetectConfig(seeds=3, steps=1, num_steps=10),
                   progress=False)
    assert ad.rows_evaluated == 3 * 3 + 3  # at s = 1: one conditional per (prompt, seed), one uncond per seed
    assert s["cost"]["denoiser_evals_run"] == 12 and s["cost"]["denoiser_evals_per_prompt"] == pytest.approx(4)


def test_resume_skips_finished_prompts_and_rescored_settings(tmp_path):
    ad = KnownAdapter({"a": frame_constant()})
    st = DetectConfig(seeds=2, steps=1, num_steps=10)
    run_detect(ad, ["a", "b"], tmp_path, settings=st, progress=False)
    ad.rows_evaluated = 0
    s = run_detect(ad, ["a", "b", "c"], tmp_path, settings=st, progress=False)
    assert s["resumed"] == 2 and ad.rows_evaluated == 2 + 2  # only "c": its 2 seeds + the shared uncond
    ad.rows_evaluated = 0
    run_detect(ad, ["a", "b", "c"], tmp_path, settings=DetectConfig(seeds=1, steps=1, num_steps=10), progress=False)
    assert ad.rows_evaluated == 0  # fewer seeds: a subset of what is stored
    run_detect(ad, ["a"], tmp_path, settings=DetectConfig(seeds=2, steps=1, num_steps=10, guidance_scale=3.0),
               progress=False)
    assert ad.rows_evaluated == 2 + 2  # other settings: scored again


def test_calibration_for_other_settings_is_refused(tmp_path):
    ad = KnownAdapter({"a": frame_constant()})
    run_detect(ad, ["x", "y"], tmp_path / "c", settings=S, calibrate_fpr=0.01, progress=False)
    with pytest.raises(PolicyMismatchError, match="steps"):
        run_detect(ad, ["a"], tmp_path / "o", settings=DetectConfig(seeds=2, steps=1, num_steps=10),
                   calibration=tmp_path / "c" / "calibration.json", progress=False)


def test_image_model_reports_the_single_magnitude(tmp_path):
    ad = KnownAdapter({"a": torch.full((4, 3, 3), 3.0)}, shape=(4, 3, 3), kind="image")
    run_detect(ad, ["a", "b"], tmp_path, settings=DetectConfig(seeds=1, steps=1, num_steps=10), calibrate_fpr=0.5,
               progress=False)
    df = pd.read_parquet(tmp_path / "detect.parquet")
    assert "content" not in df.columns and df.set_index("prompt").loc["a", "total"] == pytest.approx(3.0)


def test_evaluation_within_prompt_groups(tmp_path):
    pats = _world()
    ad = KnownAdapter(pats)
    rows = [{"prompt": p, "group": "moves" if p.startswith(("move", "novel")) else "other"} for p in pats]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = run_detect(ad, prompts, tmp_path / "o", settings=DetectConfig(seeds=1, steps=1, num_steps=10),
                   labels=_labels(tmp_path, pats), progress=False)
    g = s["evaluation"]["group:moves"]
    assert g["motion"]["auc"] == 1.0 and g["motion"]["n_memorized"] == 4 and g["motion"]["n_novel"] == 12
    assert "group:other" not in s["evaluation"]  # only memorized prompts there


def test_labels_without_both_classes_give_a_note_not_a_crash(tmp_path):
    ad = KnownAdapter({"a": frame_constant()})
    lab = tmp_path / "l.csv"
    lab.write_text("prompt,memorized\na,1\n")
    s = run_detect(ad, ["a", "b"], tmp_path / "o", settings=DetectConfig(seeds=1, steps=1, num_steps=10),
                   labels=lab, progress=False)
    assert s["evaluation"] == {} and "no evaluation" in s["evaluation_note"]


def test_a_world_prompt_file_with_an_unconditional_group_is_scored_without_it(tmp_path):
    pats = _world()
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "copy 0", "group": "duplicated_video"}\n{"prompt": "", "group": "unconditional"}\n')
    s = run_detect(KnownAdapter(pats), f, tmp_path / "out", settings=S, progress=False)
    assert s["n_prompts"] == 1
    assert list(pd.read_parquet(tmp_path / "out" / "detect.parquet")["prompt"]) == ["copy 0"]


def test_every_detector_side_by_side_with_its_cost(tmp_path):
    # one run scores the magnitudes and the first-step detectors on the same prompts and seeds, and
    # comparison.parquet ranks each score with the cost of its detector; a rerun asking for a detector the
    # stored records lack scores again, one asking for fewer resumes
    pats = _world()
    ad = KnownAdapter(pats, mode="x")
    lab = _labels(tmp_path, pats)
    first = DetectConfig(seeds=2, steps=1, num_steps=10)
    out = tmp_path / "out"
    s = run_detect(ad, list(pats), out, settings=first, labels=lab, progress=False, detectors=("anisotropy",))
    assert s["detectors"] == ["magnitude", "anisotropy"]
    s = run_detect(ad, list(pats), out, settings=first, labels=lab, progress=False, detectors=("all",))
    # "all": every detector the model supports (this one exposes no cross-attention)
    assert s["resumed"] == 0 and s["detectors"] == ["magnitude", "anisotropy", "sharpness"]
    cmp = pd.read_parquet(out / "comparison.parquet")
    mem = cmp[cmp["set"] == "memorized"].set_index("score")
    assert {"content", "motion", "total", "wen", "anisotropy", "anisotropy_motion", "sharpness",
            "sharpness_motion"} <= set(mem.index)
    # costs per prompt at n = 2 seeds, P = 20 prompts sharing each unconditional evaluation, 10 steps at
    # guidance 7.5 = 20 evaluations per generation
    n, P = 2, len(pats)
    assert mem.loc["content", "denoiser_evals"] == pytest.approx(n * (1 + 1 / P))
    assert mem.loc["anisotropy", "denoiser_evals"] == pytest.approx(n * (2 + 2 / P))
    assert mem.loc["sharpness", "denoiser_evals"] == pytest.approx(n * (1 + 1 / P) + 4 * n)
    assert mem.loc["sharpness", "cost_fraction"] == pytest.approx((n * (1 + 1 / P) + 4 * n) / 20)
    assert (mem["auc_lo"] <= mem["auc"]).all() and (mem["auc"] <= mem["auc_hi"]).all()
    # the length baseline: "copy k" / "move k" / "novel k" are all two words, so it cannot separate them
    assert mem.loc["prompt_words", "auc"] == 0.5 and mem.loc["prompt_words", "denoiser_evals"] == 0
    # the same prompts, fewer detectors: every prompt resumed
    s = run_detect(ad, list(pats), out, settings=first, labels=lab, progress=False, detectors=("sharpness",))
    assert s["resumed"] == len(pats)
