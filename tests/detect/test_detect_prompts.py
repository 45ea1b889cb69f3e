"""Prompt scoring: the functional twin of a detection run, its magnitude function, and the per-prompt cache."""
import pytest
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.calibrate import DetectConfig
from diffmem.detect.prompts import cached_records, magnitude_function, prompt_scores


def test_prompt_scores_functional_twin():
    ad = KnownAdapter({"a": alternating(a=2.0)})
    got = prompt_scores(ad, ["a", "b", "a"], DetectConfig(seeds=2, steps=1, num_steps=10))
    assert set(got) == {"a", "b"}
    assert got["a"]["motion"] == pytest.approx(2.0) and got["b"]["total"] == 0.0


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
