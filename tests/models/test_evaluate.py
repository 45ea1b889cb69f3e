"""The pixel copy check: distances and ratios worked out by hand on constant clips."""
from __future__ import annotations

import numpy as np
import pytest

from diffmem.models.evaluate import THRESHOLD, TrainingClips, clip_copy_scores


def _clip(v, shape=(2, 4, 4, 3)):
    return np.full(shape, v, dtype=np.float32)


TRAIN = TrainingClips(vectors=np.stack([_clip(0.0).ravel(), _clip(0.5).ravel(), _clip(1.0).ravel()]),
                      ids=[["a", "a-copy"], ["b"], ["c"]], captions=["zero", "half", "one"])


def test_near_copy_is_memorized_and_names_all_copies():
    s = clip_copy_scores(np.stack([_clip(0.1)]), TRAIN)[0]
    assert s["d1"] == pytest.approx(0.1) and s["d2"] == pytest.approx(0.4)
    assert s["ratio"] == pytest.approx(0.25) and s["memorized"]
    assert s["nearest_ids"] == ["a", "a-copy"] and s["nearest_caption"] == "zero"


def test_halfway_clip_is_not_memorized():
    s = clip_copy_scores(np.stack([_clip(0.25)]), TRAIN)[0]
    assert s["ratio"] == pytest.approx(1.0) and not s["memorized"]
    # just on either side of the threshold: d1 / d2 = x / (0.5 - x)
    x = THRESHOLD * 0.5 / (1 + THRESHOLD)
    assert clip_copy_scores(np.stack([_clip(x - 1e-3)]), TRAIN)[0]["memorized"]
    assert not clip_copy_scores(np.stack([_clip(x + 1e-3)]), TRAIN)[0]["memorized"]


def test_uint8_input_and_exclusion():
    g = (_clip(0.5) * 255).round().astype(np.uint8)[None]
    s = clip_copy_scores(g, TRAIN)[0]
    assert s["nearest_ids"] == ["b"] and s["d1"] == pytest.approx(abs(128 / 255 - 0.5))
    s = clip_copy_scores(g, TRAIN, exclude=[{"b"}])[0]
    assert s["nearest_ids"] == ["c"] and s["d1"] == pytest.approx(1 - 128 / 255)  # 0.498 < 0.502 to "a"


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="not the same size"):
        clip_copy_scores(np.zeros((1, 1, 4, 4, 3), np.float32), TRAIN)
