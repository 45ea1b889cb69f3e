"""The demo, end to end, on the tiny world: world -> index -> prompts -> extract (+ audit) -> detect -> report.

The model is a denoiser that memorized the world's duplicated clips by construction (`_memorizer`), so
every number the study reports can be checked against the world's ground truth. (`make demo` runs the
same code on the small world with the committed tiny text-to-video model.)
"""
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _memorizer import WorldMemorizer  # noqa: E402

pytestmark = pytest.mark.slow  # the whole study, end to end


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from diffmem.studies.demo import run_demo
    from diffmem.world import make_world

    out = tmp_path_factory.mktemp("demo")
    make_world(out / "world", seed=0, size="tiny")  # the memorizer reads the clips it memorizes from it
    model = WorldMemorizer(out / "world")
    t0 = time.perf_counter()
    result = run_demo(out, size="tiny", model=model, n=2, steps=8, guidance=1.0, detect_seeds=1, amg=False)
    return out, result, time.perf_counter() - t0


def test_every_stage_runs(demo):
    # (its wall time is measured, not asserted: timed unit tests are flaky on a shared machine)
    out, result, seconds = demo
    status = {s.name: s.status for s in result.stages}
    assert status == {"world": "done", "index": "done", "prompts": "done", "extract": "done", "detect": "done",
                      "amg": "skipped", "report": "done"}, [(s.name, s.result) for s in result.stages]
    assert json.loads((out / "demo.json").read_text())["stages"][0]["name"] == "world"
    text = result.format()
    assert "duplicated_video" in text and str(out / "report.html") in text


def test_curated_prompts_recall_every_duplicated_source(demo):
    out, result, _ = demo
    rec = result.stage("prompts").detail["recall_duplicated"]
    gt = json.loads((out / "world" / "ground_truth.json").read_text())
    assert rec["groups"] == len(gt["duplicate_groups"]) and rec["recall"] == 1.0


def test_extraction_matches_the_ground_truth(demo):
    out, result, _ = demo
    groups = result.stage("extract").detail["by_group"]
    assert groups["duplicated_video"]["rate_content"] == 1.0
    assert groups["duplicated_image"]["rate_content"] == 1.0
    assert groups["novel"]["rate_extracted"] == 0.0
    assert groups["duplicated_caption"]["rate_extracted"] == 0.0  # the memorizer did not learn those

    # every extracted training item is a copy of the source its prompt was written for
    import pandas as pd

    gt = json.loads((out / "world" / "ground_truth.json").read_text())
    source_of = {it["id"]: it["source"] for it in gt["items"]}
    caption_source = {g["caption"]: g["source"] for g in gt["duplicate_groups"]}
    per = pd.read_parquet(out / "extract" / "extract.parquet")
    for r in per.itertuples():
        if r.group in ("duplicated_video", "duplicated_image"):
            ids = json.loads(r.train_extracted) if isinstance(r.train_extracted, str) else list(r.train_extracted)
            assert ids and {source_of[i] for i in ids} == {caption_source[r.prompt]}


def test_detection_separates_what_the_audit_found(demo):
    out, result, _ = demo
    det = result.stage("detect").detail
    # by construction D = 0 for every prompt the memorizer does not know, > 0 for the ones it does; the
    # audit labels the duplicated prompts memorized; at worst the 2 motion-memorization prompts it knows
    # (labelled by the audit either way) outrank every positive: AUC >= 1 - 2 * 4 / (4 * 10) = 0.8
    assert det["n_memorized"] >= 4
    assert det["evaluation"]["total"]["auc"] >= 0.8
    # the field's detectors side by side on the same labels (this model has no cross-attention), and the
    # one-line summary keeps to the magnitudes
    scores = {r["score"] for r in det["comparison"]}
    assert {"content", "anisotropy", "sharpness", "prompt_words"} <= scores and "attention_entropy" not in scores
    assert set(det["evaluation"]) <= {"content", "motion", "total"}
    assert "Detectors side by side" in (out / "report.html").read_text()


def test_report_shows_clips_originals_and_roc(demo):
    out, result, _ = demo
    html = (out / "report.html").read_text()
    assert "Extracted training clips beside their originals" in html
    assert html.count("data:image/gif") >= 2          # generated clip + its training original
    assert "Inference-time detection" in html and "data:image/svg+xml" in html  # the ROC figure
    assert "extract/report.html" in html and "detect/report.html" in html


def test_a_second_run_resumes(demo):
    from diffmem.studies.demo import run_demo

    out, first, _ = demo
    model = WorldMemorizer(out / "world")
    again = run_demo(out, size="tiny", model=model, n=2, steps=8, guidance=1.0, detect_seeds=1, amg=False)
    assert model.calls == 0  # every sample and every detection score came from disk
    assert again.stage("extract").detail["overall"] == first.stage("extract").detail["overall"]


def test_cli_extract_against_the_demos_index(demo, tmp_path, monkeypatch, capsys):
    """`diffmem extract` with a saved index as TRAIN_OR_INDEX (the model spec resolves to the memorizer)."""
    import pandas as pd

    from diffmem import cli
    from diffmem.studies import generate

    out0, _, _ = demo
    model = WorldMemorizer(out0 / "world")
    monkeypatch.setattr(generate, "load_adapter", lambda spec, device=None, **_: model)  # where extraction loads it
    lines = [json.loads(x) for x in (out0 / "world" / "prompts.jsonl").read_text().splitlines()]
    pick = [p for p in lines if p["group"] == "duplicated_video"][:1] + [p for p in lines if p["group"] == "novel"][:1]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in pick))
    out = tmp_path / "ext"
    assert cli.main(["extract", "test:memorizer", "--prompts", str(prompts), "--train", str(out0 / "index"),
                     "--n", "2", "--steps", "6", "--guidance", "1", "--no-motion", "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    per = pd.read_parquet(out / "extract.parquet").set_index("group")
    assert per.loc["duplicated_video"].n_content == 2 and per.loc["novel"].n_extracted_samples == 0
    assert not (out / "audit" / "train_index").exists()  # the saved index was searched, not rebuilt
    labels = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert {x["prompt"]: x["memorized"] for x in labels} == {p["prompt"]: p["group"] != "novel" for p in pick}


def test_terminal_summary_is_short_and_says_where_the_report_is(demo):
    out, result, _ = demo
    text = result.format()
    lines = text.splitlines()
    assert len(lines) <= 25 and max(len(x) for x in lines[:-1]) <= 120, text  # the last: the report's path
    assert lines[-1].startswith(f"Report: {out / 'report.html'}")
    # one line per finding, and the stage that did not run says why
    for name in ("prompts", "extract", "detect"):
        assert any(x.strip().startswith(name + " ") for x in lines), name
    assert "amg       SKIPPED: turned off (--no-amg)" in text or "SKIPPED: turned off" in text
    ex = result.stage("extract").detail["overall"]
    assert f"{ex['n_extracted_samples']} of {ex['n_samples']} samples" in text


def test_report_escapes_every_text_and_shows_the_curated_prompts(demo):
    from diffmem.studies.demo_report import demo_report
    from diffmem.studies.demo_result import Stage

    out, result, _ = demo
    html = (out / "report.html").read_text()
    assert "Summary" in html and "why chosen" in html and "exact_duplicate_caption" in html
    assert "Reproduce with <code>diffmem demo --out" in html
    # a stage result with markup is shown as text, not run
    result.stages.append(Stage("evil", status="failed", result="<script>alert(1)</script>",
                               detail={"traceback": "<img src=x onerror=alert(1)>"}))
    try:
        page = demo_report(result, out)
    finally:
        result.stages.pop()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page


def test_amg_before_after_frames_from_its_sample_table(demo, tmp_path):
    """The AMG section pairs each sample with its AMG twin (same id), memorized-without-AMG first, with
    the content scores; captions are escaped. (The AMG stage itself is tested in test_amg.py.)"""
    import pandas as pd

    from diffmem.studies.demo_report import _amg_frames

    out, _, _ = demo
    clips = sorted((out / "world" / "videos").glob("*.mp4"))[:2]
    rows = []
    for variant in ("baseline", "full"):
        for k, (sid, mem) in enumerate((("p1_s0", False), ("p2_s0", True))):
            rows.append({"variant": variant, "id": sid, "prompt": f"a <b>{sid}</b>", "seed": 0, "path": str(clips[k]),
                         "content_score": 0.9 if variant == "baseline" else 0.5,
                         "content_memorized": mem and variant == "baseline"})
    amg = tmp_path / "amg"
    amg.mkdir()
    pd.DataFrame(rows).to_parquet(amg / "amg_samples.parquet")
    html = _amg_frames(amg)
    assert html.count("data:image/gif") == 4 and html.count("<figure>") == 2
    assert html.index("p2_s0") < html.index("p1_s0")  # the memorized one first
    assert "0.900 &rarr; 0.500 (memorized without AMG)" in html
    assert "<b>p1_s0</b>" not in html and "&lt;b&gt;p1_s0&lt;/b&gt;" in html
    assert _amg_frames(tmp_path / "nothing") == ""


def test_cli_passes_its_defaults_and_exits_nonzero_on_a_failed_stage(tmp_path, monkeypatch, capsys):
    import diffmem.studies.demo as demo_mod
    from diffmem import cli
    from diffmem.studies.demo_result import DemoResult, Stage

    seen = {}

    def fake(out, **kw):
        seen.update(kw, out=out)
        r = DemoResult(tmp_path, world=object(), stages=[Stage("world", "done", result="ok"),
                                                           Stage("extract", "failed", result="BadInputError: x")])
        return r

    monkeypatch.setattr(demo_mod, "run_demo", fake)
    assert cli.main(["demo", "--out", str(tmp_path), "--quiet"]) == 1
    assert seen["n"] == demo_mod.DEMO_N == 4 and seen["amg_n"] == demo_mod.AMG_N and seen["out"] == str(tmp_path)
    assert "extract  FAILED: BadInputError: x" in capsys.readouterr().out
