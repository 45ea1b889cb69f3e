"""`evaluate_world_model`: per-group rates on a version-2 world, checked on a denoiser whose memorization is
known by construction (`_memorizer.WorldMemorizer`), and the rate arithmetic on hand-made rows."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from diffmem.studies.world_eval import _check, _rates, evaluate_world_model, format_world_eval
from diffmem.world.build import SIZES, make_world
from diffmem.world.plan_v2 import WorldSizeV2

sys.path.insert(0, str(Path(__file__).parent))
from _memorizer import WorldMemorizer  # noqa: E402

# four backgrounds, so that every signature (shown on three) leaves one for the motion prompts; clips of
# 2 s at 64 px, of which the model makes the first second at 32 px, as on the large world
SMALL_V2 = WorldSizeV2("v2-eval-test", 64, 16, 8.0, ("cat", "cup", "face", "coin", "wheel"),
                       ("grass", "bricks", "stars", "cells"), (6, 4, 3, 2), (3,), (2,), 30, 4, 2, 1, n_props=4,
                       signature_appearances=3)


def test_rates_by_hand():
    rows = pd.DataFrame({
        "prompt": ["a", "a", "a", "a", "b"],
        "verdict": ["content", "both", "motion", "motion", "none"],
        "motion_match": ["v1", "v1", "v1", "v9", None],
    })
    r = _rates(rows, {"a": {"v1"}, "b": set()})
    assert r["n"] == 5
    assert r["content"] == pytest.approx(2 / 5)            # content, both
    assert r["motion"] == pytest.approx(3 / 5)             # both, motion, motion
    assert r["motion_only"] == pytest.approx(2 / 5)
    assert r["motion_only_right_source"] == pytest.approx(1 / 5)  # v9 is not one of a's sources
    assert r["memorized"] == pytest.approx(4 / 5)
    checks = _check({"unconditional": {"content": 0.06}, "novel": {"memorized": 0.03}})
    assert checks["unconditional content"]["met"] is False and checks["novel memorized"]["met"] is True


@pytest.mark.slow
def test_planted_memorizer_on_a_version_2_world(tmp_path):
    mp = pytest.MonkeyPatch()
    mp.setitem(SIZES, SMALL_V2.name, SMALL_V2)
    try:
        make_world(tmp_path / "world", seed=0, size=SMALL_V2.name)
    finally:
        mp.undo()
    prompts = [json.loads(x) for x in (tmp_path / "world" / "prompts.jsonl").read_text().splitlines()]
    assert any(p.get("role") == "memorized" for p in prompts)
    model = WorldMemorizer(tmp_path / "world", n_frames=8, size=32, fps=8.0, first=True)
    res = evaluate_world_model(model, tmp_path / "world", tmp_path / "eval", n=2, n_unconditional=3, steps=10,
                               guidance=1.0, detect_seeds=1, judge=False, progress=False)
    g = res["groups"]
    # duplicated captions give the training clip itself; novel prompts, controls and "" give noise
    assert g["duplicated_video"]["content"] == 1.0 and g["duplicated_image"]["content"] == 1.0
    assert g["novel"]["memorized"] == 0.0 and g["unconditional"]["memorized"] == 0.0
    assert g["unconditional"]["n"] == 3 and g["novel"]["n"] == 2 * sum(p["group"] == "novel" for p in prompts)
    # "B does M": the signature trajectory in appearance B, found by motion alone and matched to its sources
    # (every motion-only sample matches one of its signature's clips; the audit finds the loop and the
    # spiral at 0.96; DIS flow of this cat on bricks scores the bounce at 0.85-0.90, about tau_m)
    mm = g["motion_memorized"]
    assert mm["motion_only_right_source"] == mm["motion_only"] >= 0.5 and mm["content"] == 0.0
    assert g["motion_control"]["motion"] == 0.0
    # D = 0 for every unknown prompt: detection separates perfectly
    assert g["detect_content"]["auc"] == 1.0 and g["detect_motion"]["auc"] == 1.0
    # and against captions of unique training clips at least as long as the duplicated ones (length control)
    assert g["detect_length_control"]["auc"] == 1.0 and g["detect_length_control"]["n_prompts"] > 10
    assert json.loads((tmp_path / "eval" / "world_eval.json").read_text())["groups"]["novel"]["n"] == g["novel"]["n"]
    assert "duplicated_video" in format_world_eval(res)


def test_model_window_is_the_part_of_the_worlds_clips_a_model_makes(tmp_path):
    # world clips: 16 frames at 8 fps = 2 s. A model of 8 frames at 8 fps makes the first second: motion is
    # compared over 8 frames; 8 frames at 4 fps span the whole clip: None (whole clips); images: None
    from types import SimpleNamespace

    from diffmem.studies.world_eval import model_window

    (tmp_path / "ground_truth.json").write_text(json.dumps({"config": {"n_frames": 16, "fps": 8.0}}))

    def model(kind, frames, fps):
        return SimpleNamespace(kind=kind, fps=fps, latent_shape=lambda: (4, frames, 8, 8))

    assert model_window(model("video", 8, 8.0), tmp_path) == 8
    assert model_window(model("video", 8, 4.0), tmp_path) is None
    assert model_window(model("image", 1, 8.0), tmp_path) is None
