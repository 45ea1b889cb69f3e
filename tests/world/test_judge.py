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
