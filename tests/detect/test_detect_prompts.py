"""Prompt scoring: the functional twin of a detection run, its magnitude function, and the per-prompt cache."""
import pytest
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.calibrate import DetectConfig
from diffmem.detect.prompts import PromptDetector, cached_records, magnitude_function, prompt_scores


def test_prompt_scores_functional_twin():
    ad = KnownAdapter({"a": alternating(a=2.0)})
    got = prompt_scores(ad, ["a", "b", "a"], DetectConfig(seeds=2, steps=1, num_steps=10))
    assert set(got) == {"a", "b"}
    assert got["a"]["motion"] == pytest.approx(2.0) and got["b"]["total"] == 0.0


def test_prompt_detector_update_compute_by_hand():
    ad = KnownAdapter({"a": alternating(a=2.0), "c": frame_constant()})
    det = PromptDetector(ad, DetectConfig(seeds=2, steps=1, num_steps=10), detectors=("anisotropy",))
    det.update(["a", "b"])
    ad.rows_evaluated = 0
    det.update(["b", "c"])  # "b" is not scored twice: 2 seeds x ("c" at t_hi and t_lo, "" at t_hi and t_lo)
    assert ad.rows_evaluated == 2 * 4
    got = det.compute()
    # D = P: the motion magnitude of the alternating pattern is a = 2, the content one of frame_constant
    # is sqrt((9 + 16) / 2); an empty-pattern prompt has D = 0; Wen's L2 norm of P over 2 x 4 x 3 x 3 values
    assert got["a"]["motion"] == pytest.approx(2.0) and got["b"]["total"] == 0.0
    assert got["c"]["content"] == pytest.approx((12.5) ** 0.5)
    assert got["a"]["wen"] == pytest.approx(2.0 * 72 ** 0.5)
    # anisotropy = 1 * ||D(t_hi)|| + 2 * cos(eps_u(t_lo), D(t_lo)); here D does not depend on x or t
    assert got["a"]["anisotropy"] == pytest.approx(got["a"]["wen"] + 2 * got["a"]["anisotropy_cos"])
    det.reset()
    assert det.compute() == {}


def test_magnitude_function_keeps_prompt_order_and_repeats():
    ad = KnownAdapter({"a": alternating(a=2.0)})
    got = magnitude_function(ad, seeds=2, steps=1, progress=False)(["b", "a", "b"])
    assert [g["motion"] for g in got] == [0.0, pytest.approx(2.0), 0.0]


def test_cache_resumes_and_rescores_other_settings(tmp_path):
    ad = KnownAdapter({"a": frame_constant()})
    st = DetectConfig(seeds=2, steps=2, num_steps=10)
    first = cached_records(ad, ["a", "b", "a"], st, tmp_path, model_name="m")
    assert first.scored == ["a", "b"] and first.denoiser_evals == 2 * 2 * 2 * 2
    assert len(first.records["a"]) == 2 * 2  # seeds x steps
    ad.rows_evaluated = 0
    again = cached_records(ad, ["a", "b"], DetectConfig(seeds=1, steps=2, num_steps=10), tmp_path, model_name="m")
    assert again.scored == [] and ad.rows_evaluated == 0 and len(again.records["a"]) == 2
    other = cached_records(ad, ["a"], st, tmp_path, model_name="another model")
    assert other.scored == ["a"] and ad.rows_evaluated == 2 * 2 * 2
