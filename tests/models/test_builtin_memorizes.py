"""The committed tiny text-to-video model reproduces a duplicated training clip and not a novel caption's."""
from __future__ import annotations

import pytest

from diffmem.models import SamplerConfig, load_adapter, sample
from diffmem.models.adapter import frames_to_uint8
from diffmem.models.evaluate import clip_copy_scores, distinct_training_clips

DUPLICATED = "a cup grows over gravel"        # 24 copies in the small world, seed 0
NOVEL = "a face zigzags across stars"          # sprite, background and motion all seen, never together


@pytest.mark.slow
def test_builtin_t2v_copies_duplicated_clip_only(tmp_path):
    from diffmem.world import make_world

    make_world(tmp_path / "world", seed=0, size="small")
    train = distinct_training_clips(tmp_path / "world", frames=8, size=32)
    ad = load_adapter("builtin:tiny-t2v")
    out = sample(ad, [DUPLICATED] * 2 + [NOVEL] * 2, [0, 1, 0, 1], SamplerConfig(num_steps=25, guidance_scale=3.0),
                 progress=False)
    scores = clip_copy_scores(frames_to_uint8(out.frames), train)
    for s in scores[:2]:  # the duplicated caption: a near copy of that clip (all 24 copies are one content)
        assert s["memorized"] and s["nearest_caption"] == DUPLICATED and len(s["nearest_ids"]) == 24
    for s in scores[2:]:
        assert not s["memorized"]
