"""The generation-time guard on the hand-built denoiser (D = pattern * g(t))."""
import math

import pytest
import torch
from _known_denoiser import KnownAdapter, alternating, frame_constant

from diffmem.detect.calibrate import Calibration, DetectConfig
from diffmem.detect.guard import MemorizationGuard
from diffmem.errors import BadInputError, DiffmemError, PolicyMismatchError
from diffmem.models.sampler import SamplerConfig, sample

R = math.sqrt(12.5)  # content magnitude of frame_constant()


def _cal(thresholds, steps=1, seeds=1, num_steps=10, model="test:known"):
    return Calibration(model=model, settings=DetectConfig(seeds=seeds, steps=steps, num_steps=num_steps),
                       fpr=0.01, thresholds=thresholds)


def _adapter(mode="const"):
    return KnownAdapter({"mem": frame_constant(), "mov": alternating(a=2.0)}, mode=mode)


CFG = SamplerConfig(num_steps=10, guidance_scale=7.5)


def test_flags_content_and_motion_copies_at_the_first_step():
    guard = MemorizationGuard(_cal({"content": 1.0, "motion": 1.0}))
    out = sample(_adapter(), ["mem", "mov", "novel"], [0, 1, 2], CFG, hooks=[guard], decode=False, progress=False)
    assert set(guard.flagged) == {0, 1}
    assert guard.flagged[0].magnitudes == ["content"] and guard.flagged[0].step == 0
    assert guard.flagged[1].magnitudes == ["motion"]
    assert guard.flagged[0].scores["content"] == pytest.approx(R)
    assert out.stopped == [False] * 3 and out.steps_run == [10] * 3  # "record" lets generation finish


def test_only_the_chosen_magnitudes_are_guarded():
    guard = MemorizationGuard(_cal({"content": 1.0, "motion": 1.0}), magnitudes=["content"])
    sample(_adapter(), ["mem", "mov"], [0, 1], CFG, hooks=[guard], decode=False, progress=False)
    assert set(guard.flagged) == {0}


def test_decision_uses_the_mean_of_the_first_s_steps():
    # t = 900, 800, 700 -> mean factor 0.8
    seen = []

    def spy(state):
        seen.append((state.index, guard.check(state).tolist()))

    guard = MemorizationGuard(_cal({"content": 0.75 * R}, steps=3))
    sample(_adapter("t"), ["mem"], [0], CFG, hooks=[guard, spy], decode=False, progress=False)
    assert guard.flagged[0].step == 2 and guard.flagged[0].t == 700
    assert guard.flagged[0].scores["content"] == pytest.approx(0.8 * R, rel=1e-5)
    assert seen[:4] == [(0, [False]), (1, [False]), (2, [True]), (3, [True])]  # sticky after step 2

    guard = MemorizationGuard(_cal({"content": 0.85 * R}, steps=3))
    sample(_adapter("t"), ["mem"], [0], CFG, hooks=[guard], decode=False, progress=False)
    assert guard.flagged == {}


def test_check_twice_per_step_does_not_double_count():
    guard = MemorizationGuard(_cal({"content": 0.75 * R}, steps=3))
    calls = []

    def amg_like(state):
        on = guard.check(state)
        calls.append(on.tolist())
        if on.any():  # switch guidance off for flagged rows
            keep = (~on).view(-1, *([1] * (state.eps_guided.ndim - 1)))
            return torch.where(keep, state.eps_guided, state.eps_uncond)
        return None

    sample(_adapter("t"), ["mem", "novel"], [0, 1], CFG, hooks=[guard, amg_like], decode=False, progress=False)
    assert guard.scores(0)["content"] == pytest.approx(0.8 * R, rel=1e-5)
    assert calls[2] == [True, False]


def test_stop_ends_the_batch_once_every_sample_is_flagged():
    guard = MemorizationGuard(_cal({"content": 1.0}), action="stop")
    out = sample(_adapter(), ["mem", "mem", "novel"], [0, 1, 2], CFG, hooks=[guard], decode=False, progress=False,
                 batch_size=2)
    assert out.stopped == [True, True, False]
    assert out.steps_run == [0, 0, 10]


def test_strict_refuses_a_calibration_that_does_not_fit():
    ad = _adapter()
    for cal, msg in [(_cal({"content": 1.0}, num_steps=50), "num_steps"),
                     (_cal({"content": 1.0}, seeds=4), "n = 4"),
                     (_cal({"content": 1.0}, model="other"), "model")]:
        with pytest.raises(PolicyMismatchError, match=msg):
            sample(ad, ["mem"], [0], CFG, hooks=[MemorizationGuard(cal)], decode=False, progress=False)
    neg = SamplerConfig(num_steps=10, negative_prompt="mov")
    with pytest.raises(PolicyMismatchError, match="negative prompt"):
        sample(ad, ["mem"], [0], neg, hooks=[MemorizationGuard(_cal({"content": 1.0}))], decode=False, progress=False)
    with pytest.warns(UserWarning, match="num_steps"):
        g = MemorizationGuard(_cal({"content": 1.0}, num_steps=50), strict=False)
        sample(ad, ["mem"], [0], CFG, hooks=[g], decode=False, progress=False)
    assert g.is_flagged(0)


def test_bad_arguments():
    with pytest.raises(DiffmemError, match="action"):
        MemorizationGuard(_cal({"content": 1.0}), action="explode")
    with pytest.raises(DiffmemError, match="motion"):
        MemorizationGuard(_cal({"content": 1.0}), magnitudes=["motion"])


def test_hand_set_thresholds_need_no_calibration_file():
    guard = MemorizationGuard.from_thresholds({"motion": 1.0})
    sample(_adapter(), ["mem", "mov"], [0, 1], SamplerConfig(num_steps=7), hooks=[guard], decode=False,
           progress=False)
    assert set(guard.flagged) == {1}
    guard.reset()
    assert guard.flagged == {}


def test_from_file_refuses_a_calibration_it_cannot_use_before_sampling(tmp_path):
    good = _cal({"content": 1.0}).save(tmp_path / "one.json")
    guard = MemorizationGuard.from_file(good, model="test:known")
    sample(_adapter(), ["mem", "novel"], [0, 1], CFG, hooks=[guard], decode=False, progress=False)
    assert set(guard.flagged) == {0}  # content magnitude R = 3.54 > 1 for the copy only
    four = _cal({"content": 1.0}, seeds=4).save(tmp_path / "four.json")
    with pytest.raises(BadInputError, match=r"four\.json.*--seeds 1"):
        MemorizationGuard.from_file(four)
    with pytest.raises(BadInputError, match=r"one\.json.*'test:known', not 'other'"):
        MemorizationGuard.from_file(good, model="other")
