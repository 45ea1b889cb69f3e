import pytest

from diffmem.errors import DiffmemError
from diffmem.world.clips import ClipSpec, caption, render_clip
from diffmem.world.judge import WorldAlignment, parse_world_caption


def test_parse_world_caption():
    w = parse_world_caption("a cat moves left across grass")
    assert (w.sprite, w.background, w.motion, w.direction) == ("cat", "grass", "linear", "left")
    w = parse_world_caption("the camera pans up over bricks")
    assert (w.sprite, w.motion, w.direction) == (None, "pan", "up")
    assert parse_world_caption("an astronaut loops over stars").motion == "loop"
    assert parse_world_caption("a photo of my dog") is None


def test_world_alignment_on_rendered_clips():
    wa = WorldAlignment(size=32, n_frames=8, fps=4.0)
    specs = [ClipSpec.make("cat", "grass", "linear", "right", n_frames=8, size=32, fps=4.0, bg_x=0.2),
             ClipSpec.make("digit", "bricks", "circle", "cw", n_frames=8, size=32, fps=4.0, sprite_instance=3),
             ClipSpec.make("rocket", "stars", "static", n_frames=8, size=32, fps=4.0, bg_y=0.8)]
    for spec in specs:
        clip = render_clip(spec)
        r = wa.update(clip, caption(spec))
        assert r["aligned"], r
    assert wa.compute()["aligned"] == 1.0
    clip = render_clip(specs[0])
    wrong_sprite = wa.judge(clip, "a cup moves right across grass")
    assert not wrong_sprite["sprite_ok"] and wrong_sprite["motion_ok"]
    wrong_dir = wa.judge(clip, "a cat moves left across grass")
    assert wrong_dir["sprite_ok"] and not wrong_dir["motion_ok"]
    with pytest.raises(DiffmemError, match="not a caption"):
        wa.judge(clip, "hello")


def test_a_model_of_the_first_second_is_judged_on_that_part_of_each_motion():
    # a model making 8 frames at 8 fps shows the first second of the world's 2-second clips: the judge's
    # references span the world clip's 2 s at 8 fps, so every motion and direction is read right
    from diffmem.world.clips import DIRECTIONS

    judge = WorldAlignment(size=32, n_frames=8, fps=8.0)
    squeezed = WorldAlignment(size=32, n_frames=8, fps=8.0, clip_seconds=1.0)  # references of 8 frames
    wrong_when_squeezed = 0
    for motion, dirs in DIRECTIONS.items():
        for d in dirs:
            spec = ClipSpec.make("digit", "bricks", motion, d, n_frames=16, size=32, fps=8.0)
            first_second = render_clip(spec)[:8]
            r = judge.judge(first_second, caption(spec))
            assert r["motion_ok"], (motion, d, r["motion"])
            wrong_when_squeezed += not squeezed.judge(first_second, caption(spec))["motion_ok"]
    # with references squeezed into the model's 8 frames, the curved motions read as others
    assert wrong_when_squeezed >= 5
