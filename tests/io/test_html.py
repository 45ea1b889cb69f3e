"""Report building blocks escape everything that comes from data."""
import base64
import io

import numpy as np
from PIL import Image

from diffmem.io import embed, html
from diffmem.io.image import write_image
from diffmem.io.video import write_video


def test_esc_neutralises_markup_in_captions_and_paths():
    nasty = '<script>alert("x")</script> & \'q\''
    out = html.esc(nasty)
    assert "<" not in out and ">" not in out and '"' not in out and "'" not in out
    assert html.table(["caption"], [[nasty]]).count("<script>") == 0
    assert "<script>" not in html.page(nasty, "")


def test_png_data_uri_round_trips_pixels():
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    uri = embed.png_data_uri(a)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert np.array_equal(back, a)


def test_gif_data_uri_keeps_frame_count():
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    for i in range(4):
        frames[i, :, : 2 * (i + 1)] = 255
    uri = embed.gif_data_uri(frames, fps=4)
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.n_frames == 4


def test_clip_data_uri_plays_a_clip_at_its_rate_and_shows_an_image(tmp_path):
    frames = np.zeros((24, 32, 48, 3), np.uint8)
    for i in range(24):
        frames[i, :, 2 * i:2 * i + 2] = 255
    write_video(tmp_path / "c.mp4", frames, fps=4)
    im = Image.open(io.BytesIO(base64.b64decode(embed.clip_data_uri(tmp_path / "c.mp4").split(",", 1)[1])))
    # 24 frames, at most 16 shown: every 2nd frame, at half the clip's 4 fps (500 ms per frame); short side 64
    assert im.n_frames == 12 and im.info["duration"] == 500 and im.size == (96, 64)
    write_image(tmp_path / "i.png", frames[3])
    assert embed.clip_data_uri(tmp_path / "i.png").startswith("data:image/png;base64,")
    assert embed.clip_data_uri(tmp_path / "missing.mp4") is None
