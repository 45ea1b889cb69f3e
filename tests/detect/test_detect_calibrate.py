"""Thresholds for a false-positive rate, stored with their model and settings, refused under others."""
import json

import numpy as np
import pytest

from diffmem.detect.calibrate import Calibration, DetectConfig, calibrate
from diffmem.errors import BadInputError, DiffmemError, PolicyMismatchError


def test_threshold_lets_through_at_most_the_fpr_share_of_novel_prompts():
    novel = np.arange(200.0)  # 200 novel prompts: at 1 % two may be above -> threshold 197
    cal = calibrate({"content": novel, "motion": novel / 10}, 0.01, model="m", settings=DetectConfig())
    assert cal.thresholds["content"] == 197.0
    assert cal.thresholds["motion"] == pytest.approx(19.7)
    assert cal.calibration_fpr["content"] == pytest.approx(0.01)
    assert cal.novel_summary["content"]["count"] == 200 and cal.novel_summary["content"]["max"] == 199.0
    flags = cal.flags({"content": [197.0, 197.5], "motion": [30.0, 1.0]})
    assert flags["content"].tolist() == [False, True]
    assert flags["motion"].tolist() == [True, False]


def test_save_load_roundtrip(tmp_path):
    s = DetectConfig(seeds=1, steps=5, num_steps=20, guidance_scale=5.0)
    cal = calibrate({"content": [1.0, 2.0, 3.0]}, 0.05, model="builtin:tiny-t2v", settings=s)
    path = cal.save(tmp_path / "cal.json")
    back = Calibration.load(path)
    assert back.settings == s and back.model == "builtin:tiny-t2v"
    assert back.thresholds == cal.thresholds and back.fpr == 0.05
    assert json.loads(path.read_text())["format"].startswith("diffmem-detect-calibration")


def test_check_refuses_other_model_or_settings_but_not_another_first_seed():
    cal = calibrate({"content": [1.0, 2.0]}, 0.01, model="a", settings=DetectConfig(seeds=4, steps=1))
    cal.check("a", DetectConfig(seeds=4, steps=1, first_seed=100))
    with pytest.raises(PolicyMismatchError, match="model"):
        cal.check("b", DetectConfig(seeds=4, steps=1))
    with pytest.raises(PolicyMismatchError, match="steps: calibrated 1, asked 5"):
        cal.check("a", DetectConfig(seeds=4, steps=5))


def test_bad_calibration_files_name_the_file(tmp_path):
    with pytest.raises(BadInputError, match="not found"):
        Calibration.load(tmp_path / "missing.json")
    p = tmp_path / "junk.json"
    p.write_text("{not json")
    with pytest.raises(BadInputError, match="junk.json"):
        Calibration.load(p)
    p.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(BadInputError, match="not a diffmem detect calibration"):
        Calibration.load(p)
    p.write_text(json.dumps({"format": "diffmem-detect-calibration/1", "model": "m"}))
    with pytest.raises(BadInputError, match="missing"):
        Calibration.load(p)


def test_settings_validation_and_cost():
    with pytest.raises(DiffmemError):
        DetectConfig(seeds=0)
    with pytest.raises(DiffmemError):
        DetectConfig(steps=60, num_steps=50)
    s = DetectConfig(seeds=4, steps=1, num_steps=50)
    assert s.denoiser_evals_per_prompt() == 8       # 4 seeds x 1 step x (cond + uncond)
    assert s.generation_evals() == 100              # 50 steps x (cond + uncond)
    assert s.cost_fraction() == pytest.approx(0.08)
    assert DetectConfig(seeds=1, steps=1, num_steps=50, guidance_scale=1.0).cost_fraction() == pytest.approx(0.04)
