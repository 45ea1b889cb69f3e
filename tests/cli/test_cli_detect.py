"""`diffmem detect` on the command line, with the hand-built denoiser standing in for a model."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detect"))
from _known_denoiser import KnownAdapter, alternating, frame_constant  # noqa: E402

from diffmem import cli  # noqa: E402
import diffmem.studies.detect as study  # noqa: E402


@pytest.fixture
def model(monkeypatch):
    ad = KnownAdapter({"copied": frame_constant(), "moving": alternating(a=2.0)}, mode="t")
    monkeypatch.setattr(study, "load_adapter", lambda name, device=None, **_: ad)
    return ad


def test_calibrate_then_detect_with_labels(tmp_path, model, capsys):
    novel = tmp_path / "novel.txt"
    novel.write_text("".join(f"novel {k}\n" for k in range(5)))
    assert cli.main(["detect", "test:known", "--prompts", str(novel), "--out", str(tmp_path / "cal"),
                     "--seeds", "1", "--steps", "2", "--num-steps", "10", "--calibrate", "--fpr", "0.01"]) == 0
    cal = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert cal["settings"]["seeds"] == 1 and cal["settings"]["steps"] == 2 and cal["fpr"] == 0.01

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["copied", "moving", "novel 9", "novel 8"]))
    labels = tmp_path / "labels.csv"
    labels.write_text("prompt,memorized,kind\ncopied,true,content\nmoving,true,motion\nnovel 9,false,none\n"
                      "novel 8,false,none\n")
    out = tmp_path / "out"
    # settings come from the calibration
    assert cli.main(["detect", "test:known", "--prompts", str(prompts), "--calibration",
                     str(tmp_path / "cal" / "calibration.json"), "--labels", str(labels), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "flagged 2 of 4" in text and "AUC 1.0000" in text
    df = pd.read_parquet(out / "detect.parquet").set_index("prompt")
    assert df.loc["copied", "flag_content"] and df.loc["moving", "flag_motion"]
    assert df.loc["copied", "denoiser_evals"] == 1 * 2 * 2
    assert (out / "report.html").exists() and (out / "summary.json").exists()


def test_settings_that_contradict_the_calibration_are_an_error(tmp_path, model, capsys):
    cal_dir = tmp_path / "cal"
    assert cli.main(["detect", "m", "--prompts", str(_txt(tmp_path)), "--out", str(cal_dir), "--seeds", "1",
                     "--num-steps", "10", "--calibrate"]) == 0
    rc = cli.main(["detect", "m", "--prompts", str(_txt(tmp_path)), "--out", str(tmp_path / "o"), "--seeds", "4",
                   "--calibration", str(cal_dir / "calibration.json")])
    assert rc == 1
    assert "seeds: calibrated 1, asked 4" in capsys.readouterr().err


def test_missing_prompt_file_names_it(tmp_path, model, capsys):
    rc = cli.main(["detect", "m", "--prompts", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")])
    assert rc == 1 and "nope.txt" in capsys.readouterr().err


def _txt(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("a\nb\n")
    return p
