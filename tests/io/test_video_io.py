"""Video/image reading, timestamp sampling, rotation, writing and bad input.

Every video is written here. Each frame carries its own index as 6 black/white stripes
(bit b set = stripe b white), which survives lossy codecs, so a test checks the decoded
frame really is the source frame it claims to be, not just the index the reader reports.
"""
from __future__ import annotations

import struct
import warnings
from fractions import Fraction

import av
import numpy as np
import pytest

from diffmem.errors import BadInputError
from diffmem.io import video as V
from diffmem.io.video import (
    Frames,
    TruncatedVideoWarning,
    apply_display_matrix,
    probe,
    read_frames,
    resize_frames,
    sample_times,
    write_video,
)

BITS = 6


def coded(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    out = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                out[i, :, b * w // BITS:(b + 1) * w // BITS] = 255
    return out


def index_of(frame: np.ndarray, w: int | None = None) -> int:
    """Read the stripes back (centre column of each stripe, middle rows)."""
    h = frame.shape[0]
    w = w or frame.shape[1]
    i = 0
    for b in range(BITS):
        x = (b * w // BITS + (b + 1) * w // BITS) // 2
        if frame[h // 4: 3 * h // 4, x].mean() > 128:
            i |= 1 << b
    return i


def content_indices(frames: Frames, w: int | None = None) -> list[int]:
    return [index_of(f, w) for f in frames.array]


def expected_by_hand(src_fps: int, dst_fps: int, n_src: int) -> list[int]:
    # frame shown at t = k/dst is floor(t * src) (CFR from 0); sample while t < n_src/src
    ks = [k for k in range(10 * n_src) if k * src_fps < n_src * dst_fps]
    return [k * src_fps // dst_fps for k in ks]


# ------------------------------------------------------------------ formats

@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "webm", "avi", "gif"])
def test_every_video_format_round_trips(tmp_path, ext):
    src = coded(12)
    path = write_video(tmp_path / f"clip.{ext}", src, fps=10)
    got = read_frames(path)
    assert got.array.dtype == np.uint8 and got.array.shape == (12, 48, 64, 3)
    assert got.indices.tolist() == list(range(12))
    assert content_indices(got) == list(range(12))
    np.testing.assert_allclose(got.timestamps, np.arange(12) / 10, atol=1e-3)
    info = probe(path)
    assert (info.width, info.height, info.n_frames, info.kind, info.rotation) == (64, 48, 12, "video", 0)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(1.2)


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp", "webp", "tif"])
def test_every_image_format_is_a_one_frame_video(tmp_path, ext):
    y, x = np.mgrid[0:20, 0:28]
    img = np.stack([x * 9, y * 12, 255 - x * 4 - y * 3], -1).astype(np.uint8)  # smooth, 20x28
    path = V.write_image(tmp_path / f"im.{ext}", img)
    got = read_frames(path, fps=8, num_frames=None)
    assert got.array.shape == (1, 20, 28, 3)
    assert got.indices.tolist() == [0] and got.timestamps.tolist() == [0.0]
    err = np.abs(got.array[0].astype(int) - img)
    if ext in ("png", "bmp", "tif"):
        assert err.max() == 0
    else:  # jpg/webp are lossy (and subsample colour): close on average
        assert err.mean() < 4 and err.max() < 40
    assert len(read_frames(path, num_frames=16)) == 1  # an image is one frame whatever is asked
    info = probe(path)
    assert (info.width, info.height, info.n_frames, info.kind) == (28, 20, 1, "image")


def test_image_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    img = np.zeros((10, 20, 3), np.uint8)
    img[:3, :3] = 255  # marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF 6: display = stored rotated 90 degrees clockwise
    path = tmp_path / "o.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    got = read_frames(path).array[0]
    assert got.shape == (20, 10, 3)
    assert got[:3, -3:].mean() > 200 and got[:3, :3].mean() < 50  # top-left went to top-right
    assert (probe(path).width, probe(path).height) == (10, 20)


# ------------------------------------------------------------------ sampling by timestamp

def test_sample_times_by_hand():
    assert sample_times(1.0, fps=8).tolist() == [k / 8 for k in range(8)]
    assert sample_times(1.01, fps=8).tolist() == [k / 8 for k in range(9)]
    assert sample_times(2.0, num_frames=4).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert sample_times(0.0, fps=8).tolist() == [0.0]
    with pytest.raises(ValueError):
        sample_times(1.0)
    with pytest.raises(ValueError):
        sample_times(1.0, fps=8, num_frames=3)
    with pytest.raises(ValueError):
        sample_times(1.0, fps=-1)


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "avi"])
def test_30fps_to_8fps_by_hand(tmp_path, ext):
    path = write_video(tmp_path / f"a.{ext}", coded(30), fps=30)
    got = read_frames(path, fps=8)
    expected = [0, 3, 7, 11, 15, 18, 22, 26]  # floor(k * 30 / 8), 1 s of video -> 8 samples
    assert expected == expected_by_hand(30, 8, 30)
    assert got.indices.tolist() == expected
    assert content_indices(got) == expected
    np.testing.assert_allclose(got.timestamps, np.arange(8) / 8)


@pytest.mark.parametrize("ext", ["mp4", "webm", "avi", "gif"])
def test_12fps_to_8fps_by_hand(tmp_path, ext):
    path = write_video(tmp_path / f"b.{ext}", coded(12), fps=12.5 if ext == "gif" else 12)
    got = read_frames(path, fps=8)
    if ext == "gif":  # GIF delays are whole 1/100 s: 12.5 fps is 8 cs per frame
        expected = [int(k * 12.5 / 8) for k in range(8)]  # 0,1,3,4,6,7,9,10
    else:
        expected = [0, 1, 3, 4, 6, 7, 9, 10]  # floor(k * 1.5)
    assert expected == [0, 1, 3, 4, 6, 7, 9, 10]
    assert got.indices.tolist() == expected
    assert content_indices(got) == expected


def test_webm_rounded_timestamps_still_pick_the_right_frame(tmp_path):
    # webm stores times in ms: frame 2 of a 30 fps clip is at 67 ms, a hair after 2/30 s.
    path = write_video(tmp_path / "c.webm", coded(30), fps=30)
    got = read_frames(path, fps=15)
    assert got.indices.tolist() == [2 * k for k in range(15)]
    assert content_indices(got) == [2 * k for k in range(15)]


def test_two_rates_compare_frame_for_frame(tmp_path):
    # the same 1 s scene at 30 and 12 fps, sampled at 6 fps, shows the same moments
    n30, n12 = coded(30), coded(12)
    a = read_frames(write_video(tmp_path / "a.mp4", n30, fps=30), fps=6)
    b = read_frames(write_video(tmp_path / "b.mp4", n12, fps=12), fps=6)
    np.testing.assert_allclose(a.timestamps, b.timestamps)
    assert a.indices.tolist() == [5 * k for k in range(6)]
    assert b.indices.tolist() == [2 * k for k in range(6)]


def test_sampling_by_count(tmp_path):
    path = write_video(tmp_path / "d.mp4", coded(30), fps=30)
    got = read_frames(path, num_frames=5)
    assert got.indices.tolist() == [0, 6, 12, 18, 24]  # t = 0, .2, .4, .6, .8 s
    assert content_indices(got) == [0, 6, 12, 18, 24]
    assert read_frames(path, num_frames=30).indices.tolist() == list(range(30))
    assert read_frames(path, num_frames=60).indices.tolist() == [k // 2 for k in range(60)]
    with pytest.raises(ValueError):
        read_frames(path, num_frames=0)


def test_only_sampled_frames_are_converted(tmp_path, monkeypatch):
    path = write_video(tmp_path / "e.mp4", coded(30), fps=30)
    calls = []
    real = V._to_rgb
    monkeypatch.setattr(V, "_to_rgb", lambda fr, size, ref: calls.append(1) or real(fr, size, ref))
    read_frames(path, fps=8)
    assert len(calls) == 8  # streaming: 30 decoded, 8 converted and kept


@pytest.mark.parametrize("ext", ["mp4", "webm", "gif"])
def test_frames_are_the_decoders_own_rgb_conversion(tmp_path, ext):
    # read_frames keeps one swscale context per file; the pixels must be PyAV's per-frame conversion
    path = write_video(tmp_path / f"c.{ext}", coded(6), fps=6)
    with av.open(str(path)) as c:
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    assert np.array_equal(read_frames(path).array, want)


def _write_vfr(path, pts_ms, size=32):
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if path.suffix == ".mp4" else "libvpx-vp9", rate=Fraction(10))
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        src = coded(len(pts_ms), size, size)
        for i, t in enumerate(pts_ms):
            f = av.VideoFrame.from_ndarray(src[i], format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_variable_frame_rate_uses_real_timestamps(tmp_path, ext):
    path = tmp_path / f"vfr.{ext}"
    _write_vfr(path, [0, 100, 150, 400, 450, 900])
    every = read_frames(path)
    np.testing.assert_allclose(every.timestamps, [0, .1, .15, .4, .45, .9], atol=1e-3)
    got = read_frames(path, fps=10)
    # t = 0 .1 .2 .3 .4 .5 .6 .7 .8 .9 -> last frame with time <= t
    expected = [0, 1, 2, 2, 3, 4, 4, 4, 4, 5]
    assert got.indices.tolist() == expected
    assert content_indices(got) == expected


# ------------------------------------------------------------------ sizes, one frame, rotation

def test_odd_size(tmp_path):
    src = coded(4, 17, 33)
    got = read_frames(write_video(tmp_path / "odd.mp4", src, fps=8))
    assert got.array.shape == (4, 18, 34, 3)  # padded to even for yuv420p
    assert content_indices(got, w=33) == [0, 1, 2, 3]
    assert np.abs(got.array[:, :17, :33].astype(int) - src).mean() < 8
    gif = read_frames(write_video(tmp_path / "odd.gif", src, fps=8))
    assert gif.array.shape == (4, 17, 33, 3)  # gif keeps the exact size
    assert content_indices(gif) == [0, 1, 2, 3]
    assert read_frames(tmp_path / "odd.mp4", size=(17, 33)).array.shape == (4, 17, 33, 3)


@pytest.mark.parametrize("ext", ["mp4", "gif", "webm", "avi"])
def test_one_frame_video(tmp_path, ext):
    src = coded(6)[5:6]
    path = write_video(tmp_path / f"one.{ext}", src, fps=8)
    for got in (read_frames(path), read_frames(path, fps=8)):
        assert got.array.shape[0] == 1 and content_indices(got) == [5]
    assert read_frames(path, num_frames=3).indices.tolist() == [0, 0, 0]
    assert probe(path).n_frames == 1


def _marker_frames(n=3, h=32, w=48):
    arr = np.zeros((n, h, w, 3), np.uint8)
    arr[:, :8, :8] = (255, 0, 255)  # marker at the stored top-left
    return arr


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                    reason="this PyAV cannot write display rotation (the tkhd test below still runs)")
def test_rotation_side_data_is_applied(tmp_path):
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.set_display_rotation(90)  # PyAV: counter-clockwise degrees
        for i, a in enumerate(_marker_frames()):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    got = read_frames(path).array
    assert got.shape == (3, 48, 32, 3)
    # 90 degrees counter-clockwise: the stored top-left goes to the bottom-left
    assert got[0, -6:, :6].mean(axis=(0, 1))[[0, 2]].min() > 200
    assert got[0, :6, :6].mean() < 30
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 32, 48)


def test_rotation_from_a_quicktime_track_matrix(tmp_path):
    """Patch the tkhd matrix of a written mp4 the way a phone records portrait video:
    [0 1 0; -1 0 0; H 0 1]. QuickTime maps a stored point (x, y) to (a x + c y + tx, b x + d y + ty)
    = (H - y, x): the stored top-left (0, 0) is shown at the top-right (H, 0)."""
    path = write_video(tmp_path / "r.mp4", _marker_frames(h=32, w=48), fps=8)
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    off = i + 8 + (28 if version == 1 else 16) + 4 + 8 + 8  # to the matrix (ISO 14496-12 8.3.2)
    assert struct.unpack(">9i", data[off:off + 36])[8] == 0x40000000  # w = 1.0 in 2.30 fixed point
    data[off:off + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 32 << 16, 0, 0x40000000)
    path.write_bytes(bytes(data))
    got = read_frames(path).array
    assert got.shape == (3, 48, 32, 3)
    assert got[0, :6, -6:].mean(axis=(0, 1))[[0, 2]].min() > 200  # marker now top-right
    assert got[0, :6, :6].mean() < 30
    assert probe(path).rotation == 270  # 90 clockwise = 270 counter-clockwise


def test_apply_display_matrix_matches_the_coordinate_map():
    # For each of the 8 rotation/mirror matrices, build the display image pixel by pixel from
    # the defining map (x, y) -> (a x + c y, b x + d y), shifted to start at 0.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    h, w = img.shape[:2]
    for a, b, c, d in [(1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0),
                       (-1, 0, 0, 1), (1, 0, 0, -1), (0, 1, 1, 0), (0, -1, -1, 0)]:
        pts = {(x, y): (a * x + c * y, b * x + d * y) for y in range(h) for x in range(w)}
        xs = [p[0] for p in pts.values()]
        ys = [p[1] for p in pts.values()]
        out = np.zeros((max(ys) - min(ys) + 1, max(xs) - min(xs) + 1, 3), np.uint8)
        for (x, y), (u, v) in pts.items():
            out[v - min(ys), u - min(xs)] = img[y, x]
        m = [a * 65536, b * 65536, 0, c * 65536, d * 65536, 0, 0, 0, 1 << 30]
        np.testing.assert_array_equal(apply_display_matrix(img, m), out)
        np.testing.assert_array_equal(apply_display_matrix(img[None], m)[0], out)


# ------------------------------------------------------------------ resize

def test_resize_short_side_and_exact():
    arr = np.zeros((2, 48, 64, 3), np.uint8)
    assert resize_frames(arr, 24).shape == (2, 24, 32, 3)
    assert resize_frames(arr[:, :, :30], 24).shape == (2, 38, 24, 3)  # 48*24/30 = 38.4
    assert resize_frames(arr, (10, 7)).shape == (2, 10, 7, 3)
    assert resize_frames(arr[0], 24).shape == (24, 32, 3)
    assert resize_frames(arr, 96).shape == (2, 96, 128, 3)


def test_downscale_is_area_average():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (8, 12, 3)).astype(np.uint8)
    small = resize_frames(img, (4, 6))
    block_means = img.reshape(4, 2, 6, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(small - block_means).max() <= 0.5 + 1e-9


# ------------------------------------------------------------------ writing

def test_write_video_rejects_bad_arrays_and_extensions(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "x.flv", coded(2))
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", coded(2), fps=0)
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_write_video_accepts_frames_and_lists(tmp_path):
    f = read_frames(write_video(tmp_path / "a.mp4", coded(3), fps=8))
    assert content_indices(read_frames(write_video(tmp_path / "b.mp4", f, fps=8))) == [0, 1, 2]
    assert len(read_frames(write_video(tmp_path / "c.gif", list(coded(3)), fps=8))) == 3


# ------------------------------------------------------------------ bad input

def _assert_bad(path, *words):
    with pytest.raises(BadInputError) as e:
        read_frames(path)
    assert str(path) in str(e.value)
    for w in words:
        assert w in e.value.reason
    with pytest.raises(BadInputError):
        probe(path)


def test_missing_file(tmp_path):
    _assert_bad(tmp_path / "nope.mp4", "not found")


def test_zero_byte_file(tmp_path):
    (tmp_path / "z.mp4").write_bytes(b"")
    _assert_bad(tmp_path / "z.mp4", "empty")
    (tmp_path / "z.png").write_bytes(b"")
    _assert_bad(tmp_path / "z.png", "empty")


def test_directory(tmp_path):
    (tmp_path / "d.mp4").mkdir()
    _assert_bad(tmp_path / "d.mp4", "directory")


def test_text_renamed_to_video_and_image(tmp_path):
    (tmp_path / "t.mp4").write_text("this is not a video\n" * 50)
    _assert_bad(tmp_path / "t.mp4", "not a video")
    (tmp_path / "t.jpg").write_text("this is not an image\n" * 50)
    _assert_bad(tmp_path / "t.jpg", "not a readable image")


def test_mp4_cut_in_half_is_an_error(tmp_path):
    path = write_video(tmp_path / "full.mp4", coded(30), fps=30)
    data = path.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    _assert_bad(tmp_path / "half.mp4")  # nothing decodable: the reason says so


def test_webm_cut_in_half_returns_what_decodes_and_warns(tmp_path):
    path = write_video(tmp_path / "full.webm", coded(30), fps=30)
    data = path.read_bytes()
    half = tmp_path / "half.webm"
    half.write_bytes(data[: len(data) // 2])
    with pytest.warns(TruncatedVideoWarning, match="half.webm"):
        got = read_frames(half)
    assert got.truncated
    assert 1 <= len(got) < 30
    assert content_indices(got) == list(range(len(got)))  # the frames before the cut are right
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not read_frames(path).truncated  # the whole file does not warn


def test_cut_before_the_first_frame_is_an_error(tmp_path):
    path = write_video(tmp_path / "full.webm", coded(30), fps=30)
    (tmp_path / "head.webm").write_bytes(path.read_bytes()[:200])
    _assert_bad(tmp_path / "head.webm")
