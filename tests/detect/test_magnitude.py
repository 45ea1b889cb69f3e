"""Magnitudes against denoisers whose text difference D is built by hand."""
import math

import pytest
import torch
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.magnitude import (
    MagnitudeDetector,
    aggregate_records,
    content_magnitude,
    magnitudes,
    motion_magnitude,
    total_magnitude,
)
from diffmem.errors import DiffmemError
from diffmem.models.sampler import SamplerConfig, iter_samples, sample


def _pair(pattern, batch=1):
    """eps_cond, eps_uncond with D = pattern, on top of an arbitrary shared prediction."""
    base = torch.randn(batch, *pattern.shape, generator=torch.Generator().manual_seed(1))
    return base + pattern, base


def test_frame_constant_difference_has_no_motion():
    ec, eu = _pair(frame_constant())
    assert motion_magnitude(ec, eu).item() == pytest.approx(0.0, abs=1e-6)
    assert content_magnitude(ec, eu).item() == pytest.approx(math.sqrt((9 + 16) / 2), rel=1e-6)


def test_zero_mean_over_frames_difference_has_no_content():
    ec, eu = _pair(alternating(a=2.0))
    assert content_magnitude(ec, eu).item() == pytest.approx(0.0, abs=1e-6)
    assert motion_magnitude(ec, eu).item() == pytest.approx(2.0, rel=1e-6)


def test_mixed_difference_splits_and_total_is_pythagorean():
    # content 1 everywhere + alternating +-2: M_c = 1, M_m = 2, M = sqrt(5)
    ec, eu = _pair(torch.ones(2, 4, 3, 3) + alternating(a=2.0))
    m = magnitudes(ec, eu, frame_axis=2)
    assert m["content"].item() == pytest.approx(1.0, rel=1e-6)
    assert m["motion"].item() == pytest.approx(2.0, rel=1e-6)
    assert m["total"].item() == pytest.approx(math.sqrt(5.0), rel=1e-6)
    assert total_magnitude(ec, eu).item() == pytest.approx(math.sqrt(5.0), rel=1e-6)
    # Wen et al.: the L2 norm over all 2 x 4 x 3 x 3 = 72 elements, each 1 + 2 or 1 - 2: sqrt(72 x 5)
    assert m["wen"].item() == pytest.approx(math.sqrt(72 * 5.0), rel=1e-6)


def test_frame_axis_other_than_two():
    # the same pattern with frames on the last axis
    p = (torch.ones(2, 4, 3, 3) + alternating(a=2.0)).permute(0, 2, 3, 1)
    ec, eu = _pair(p)
    assert content_magnitude(ec, eu, frame_axis=-1).item() == pytest.approx(1.0, rel=1e-6)
    assert motion_magnitude(ec, eu, frame_axis=4).item() == pytest.approx(2.0, rel=1e-6)


def test_one_value_per_batch_row():
    ec = torch.stack([frame_constant(), alternating(a=2.0), torch.zeros(2, 4, 3, 3)])
    eu = torch.zeros_like(ec)
    m = magnitudes(ec, eu)
    assert m["content"].tolist() == pytest.approx([math.sqrt(12.5), 0.0, 0.0], abs=1e-6)
    assert m["motion"].tolist() == pytest.approx([0.0, 2.0, 0.0], abs=1e-6)


def test_image_latents_have_the_total_and_wen_magnitudes():
    ec = torch.full((2, 4, 8, 8), 3.0)
    m = magnitudes(ec, torch.zeros_like(ec), frame_axis=None)
    assert set(m) == {"total", "wen"}
    assert m["total"].tolist() == pytest.approx([3.0, 3.0])
    assert m["wen"].tolist() == pytest.approx([3.0 * 16, 3.0 * 16])  # sqrt(256 x 9)


def test_shape_mismatch_and_missing_frames_are_errors():
    with pytest.raises(DiffmemError, match="shape"):
        content_magnitude(torch.zeros(1, 2, 4, 3, 3), torch.zeros(1, 2, 3, 3, 3))
    with pytest.raises(DiffmemError, match="batch axis"):
        motion_magnitude(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), frame_axis=0)


def test_detector_update_compute_averages_per_key():
    det = MagnitudeDetector(frame_axis=2)
    ec = torch.stack([frame_constant(), alternating(a=2.0)])
    det.update(ec, torch.zeros_like(ec), ["a", "b"], step=0)
    ec2 = torch.stack([2 * frame_constant()])
    det.update(ec2, torch.zeros_like(ec2), ["a"], step=1)
    got = det.compute()
    assert got["a"]["content"] == pytest.approx(1.5 * math.sqrt(12.5))  # mean of r and 2r
    assert got["a"]["count"] == 2
    assert got["b"]["motion"] == pytest.approx(2.0)
    assert got["b"]["content"] == pytest.approx(0.0, abs=1e-9)
    assert len(det.records) == 3


def test_detector_as_hook_averages_the_first_s_steps_and_stops():
    # D = P * t/1000; DDIM over 10 steps of 1000 visits t = 900, 800, 700, ...
    ad = KnownAdapter({"mem": frame_constant()}, mode="t")
    det = MagnitudeDetector(steps=3)
    cfg = SamplerConfig(num_steps=10, guidance_scale=7.5)
    out = sample(ad, ["mem", "novel"], [0, 1], cfg, hooks=[det], decode=False, progress=False)
    assert out.stopped == [True, True]
    res = det.compute()
    assert res["mem"]["content"] == pytest.approx(math.sqrt(12.5) * (0.9 + 0.8 + 0.7) / 3, rel=1e-5)
    assert res["mem"]["motion"] == pytest.approx(0.0, abs=1e-6)
    assert res["novel"]["total"] == pytest.approx(0.0, abs=1e-9)
    # early stop: 3 steps, 2 samples, cond + uncond rows
    assert ad.rows_evaluated == 3 * 2 * 2
    assert sorted({r["t"] for r in det.records}) == [700, 800, 900]


def test_detector_averages_over_seeds():
    # D = P * |mean(x_t)|; at step 0 x_t is the seed's initial noise (one CPU generator per seed)
    ad = KnownAdapter({"p": alternating(a=2.0)}, mode="x")
    det = MagnitudeDetector(steps=1)
    seeds = [3, 4, 5, 6]
    list(iter_samples(ad, ["p"] * 4, seeds, SamplerConfig(num_steps=5), hooks=[det], decode=False, progress=False,
                      batch_size=3))
    g = [abs(torch.randn(ad.shape, generator=torch.Generator().manual_seed(s)).mean().item()) for s in seeds]
    assert det.compute()["p"]["motion"] == pytest.approx(2.0 * sum(g) / 4, rel=1e-5)
    # re-aggregating the first 2 seeds gives the 2-seed score
    assert aggregate_records(det.records, seeds=2)["p"]["motion"] == pytest.approx(2.0 * (g[0] + g[1]) / 2, rel=1e-5)


def test_aggregate_records_over_fewer_steps():
    ad = KnownAdapter({"p": frame_constant()}, mode="t")
    det = MagnitudeDetector(steps=5)
    sample(ad, ["p", "p"], [0, 1], SamplerConfig(num_steps=10), hooks=[det], decode=False, progress=False)
    r = math.sqrt(12.5)
    assert aggregate_records(det.records, steps=1)["p"]["content"] == pytest.approx(0.9 * r, rel=1e-5)
    assert aggregate_records(det.records, steps=2)["p"]["content"] == pytest.approx(0.85 * r, rel=1e-5)
    assert aggregate_records(det.records)["p"]["content"] == pytest.approx(0.7 * r, rel=1e-5)


def test_image_model_hook_reports_total_and_wen():
    ad = KnownAdapter({"p": torch.full((4, 3, 3), 3.0)}, shape=(4, 3, 3), kind="image")
    det = MagnitudeDetector(steps=1)
    sample(ad, ["p"], [0], SamplerConfig(num_steps=4), hooks=[det], decode=False, progress=False)
    res = det.compute()["p"]
    assert set(res) == {"total", "wen", "count"}
    assert res["total"] == pytest.approx(3.0) and res["wen"] == pytest.approx(3.0 * 6)  # sqrt(36 x 9)


def test_keys_name_samples_by_input_index():
    ad = KnownAdapter({"p": frame_constant()})
    det = MagnitudeDetector(keys=["id0", "id0", "id1"])
    sample(ad, ["p", "p", "q"], [0, 1, 0], SamplerConfig(num_steps=4), hooks=[det], decode=False, progress=False,
           batch_size=2)
    res = det.compute()
    assert set(res) == {"id0", "id1"} and res["id0"]["count"] == 2


def test_first_step_fast_path_equals_the_sampler_hook():
    from diffmem.detect.magnitude import first_step_records

    g = torch.Generator().manual_seed(0)
    ad = KnownAdapter({f"p{k}": torch.randn(2, 4, 3, 3, generator=g) for k in range(5)}, mode="x")
    cfg = SamplerConfig(num_steps=10)
    prompts = [f"p{k}" for k in range(5)]
    seeds = [0, 1, 2]
    fast = first_step_records(ad, prompts, seeds, cfg, batch_size=4)
    assert ad.rows_evaluated == 5 * 3 + 3
    det = MagnitudeDetector(steps=1)
    sample(ad, [p for p in prompts for _ in seeds], seeds * 5, cfg, hooks=[det], decode=False, progress=False)
    slow = {(r["key"], r["seed"]): r for r in det.records}
    assert len(fast) == len(slow) == 15
    for r in fast:
        o = slow[(r["key"], r["seed"])]
        assert r["t"] == o["t"] == 900
        for n in ("content", "motion", "total"):
            assert r[n] == pytest.approx(o[n], rel=1e-6, abs=1e-9)
