"""The one AMG configuration: its defaults (the CLI's), its thresholds worked out by hand, its checks."""
import math

import pytest

from diffmem.errors import DiffmemError
from diffmem.guidance.config import AMGConfig
from diffmem.guidance.schedules import ThresholdSchedule


def test_defaults_are_the_ones_the_cli_runs():
    c = AMGConfig()
    assert (c.c1, c.c2, c.c3) == (13.0, 13.0, 200.0)
    assert (c.schedule, c.content_lo, c.content_hi, c.content_lambda) == ("exponential", 0.97, 1.0, None)
    assert (c.motion, c.motion_lo, c.motion_hi, c.motion_weight) == (True, 0.75, 0.9, 1.0)
    assert (c.terms, c.switch, c.caption_mode, c.caption_top, c.check_every) == (
        ("spe", "dup", "sim"), "threshold", "frequent", 10, 5)


def test_thresholds_by_hand():
    c = AMGConfig()
    # content: 0.97 tau_c at t = T up to tau_c at t = 0, exponential with rate 5 (the authors' shape)
    s = c.schedule_for("content", 0.8)
    assert s == ThresholdSchedule("exponential", 0.97 * 0.8, 0.8)
    assert s(0, 1000) == pytest.approx(0.8)
    assert s(500, 1000) == pytest.approx(0.776 + 0.024 * math.exp(-2.5))
    # motion: 0.75 to 0.9 tau_m
    assert c.schedule_for("motion", 0.9) == ThresholdSchedule("exponential", 0.75 * 0.9, 0.9 * 0.9)
    # absolute content values replace the fractions (content and pixel, not motion)
    a = AMGConfig(content_lambda=[0.3, 0.4])
    assert a.content_lambda == (0.3, 0.4)
    assert a.schedule_for("content", None) == a.schedule_for("pixel", None) == ThresholdSchedule("exponential", 0.3, 0.4)
    assert a.schedule_for("motion", 0.9).hi == pytest.approx(0.81)
    # constant: lambda = hi at every step
    k = AMGConfig(schedule="constant").schedule_for("content", 0.5)
    assert k(0, 1000) == k(999, 1000) == 0.5
    assert AMGConfig(motion_weight=0.5).weight("motion") == 0.5 and AMGConfig().weight("content") == 1.0


def test_bad_values_are_refused():
    with pytest.raises(DiffmemError, match="unknown AMG terms"):
        AMGConfig(terms=("spe", "nope"))
    with pytest.raises(DiffmemError, match="switch"):
        AMGConfig(switch="sometimes")
    with pytest.raises(DiffmemError, match="schedule"):
        AMGConfig(schedule="cosine")
    with pytest.raises(DiffmemError, match="caption mode"):
        AMGConfig(caption_mode="most")
    with pytest.raises(DiffmemError, match="check_every"):
        AMGConfig(check_every=0)
    with pytest.raises(DiffmemError, match="no threshold for the 'content' similarity"):
        AMGConfig().schedule_for("content", None)
