"""Video (and image) reading by timestamp, probing, resizing and writing, with PyAV.

Frame sampling (the project standard, see DESIGN "Data model"): sample times are
t_k = k / fps seconds from the first frame's time (or t_k = k * duration / num_frames), and
the frame taken at t is the one *shown* at t: the last frame whose presentation time is
<= t + eps. Real presentation timestamps are used, so variable-frame-rate videos and videos
of different rates compare frame for frame. eps absorbs container timestamp rounding (a
30 fps webm stores frame 2 at 67 ms, not 66.67 ms): one tick of the stream's time base,
at least 1 us, at most a quarter of a nominal frame interval.

Decoding streams: only the frames that are sampled are converted to RGB and kept.

Display rotation (phone videos) is applied, so frames come out upright; `VideoInfo.rotation`
is the counter-clockwise rotation that was applied (FFmpeg's display-matrix convention: a
portrait phone clip stored landscape reads 270).

Damaged files: missing, empty, non-media, directories, and files with no decodable frame
raise `BadInputError`. A file that decodes partly (cut-off download) returns the frames that
decode, sets `Frames.truncated` and warns with `TruncatedVideoWarning`: those frames are real
training data and a memorization audit should still see them.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from diffmem.errors import BadInputError
from diffmem.io.atomic import atomic_output
from diffmem.io.image import IMAGE_EXTENSIONS, check_file, image_info, read_image, write_image

__all__ = [
    "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS", "WRITE_EXTENSIONS",
    "Frames", "VideoInfo", "TruncatedVideoWarning", "media_kind", "probe", "read_frames",
    "sample_times", "resize_frames", "apply_display_matrix", "write_video", "read_image",
    "write_image",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".gif"})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
WRITE_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif"})


class TruncatedVideoWarning(UserWarning):
    """A video decoded only partly; the frames that decoded were returned."""


@dataclass(eq=False)
class Frames:
    """Sampled frames. `timestamps` are the sample times in seconds from the first frame
    (with neither fps nor num_frames: each frame's own presentation time); `indices` are the
    source frame numbers (0-based, presentation order) shown at those times."""

    array: np.ndarray        # uint8 (T, H, W, 3)
    timestamps: np.ndarray   # float64 (T,)
    indices: np.ndarray      # int64 (T,)
    truncated: bool = False  # the file ended early or was damaged; these are the frames that decoded

    def __len__(self) -> int:
        return int(self.array.shape[0])


@dataclass(frozen=True)
class VideoInfo:
    """What a file holds. width/height are as displayed (after rotation). Images: fps 0,
    duration 0, one frame. duration = last frame's end - first frame's start."""

    path: str
    width: int
    height: int
    fps: float
    duration: float
    n_frames: int
    rotation: int  # counter-clockwise degrees applied for display: 0, 90, 180 or 270
    kind: str      # 'video' or 'image'


def media_kind(path: str | Path) -> str | None:
    """'image', 'video' or None, from the extension."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return None


# ---------------------------------------------------------------- sampling

def _check_sampling(fps, num_frames) -> None:
    if fps is not None and num_frames is not None:
        raise ValueError("give fps or num_frames, not both")
    if fps is not None and not (float(fps) > 0 and np.isfinite(float(fps))):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if num_frames is not None and (int(num_frames) != num_frames or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")


def sample_times(duration: float, *, fps: float | None = None, num_frames: int | None = None,
                 eps: float = 1e-6) -> np.ndarray:
    """Sample times in seconds from the first frame, float64.

    fps: t_k = k / fps for every k with t_k < duration - eps (at least t_0 = 0).
    num_frames: t_k = k * duration / num_frames, k = 0..num_frames-1 (num_frames equal to the
    frame count of a constant-rate video gives every frame exactly once).
    """
    _check_sampling(fps, num_frames)
    if fps is None and num_frames is None:
        raise ValueError("give fps or num_frames")
    duration = max(float(duration), 0.0)
    if num_frames is not None:
        return np.arange(int(num_frames), dtype=np.float64) * (duration / int(num_frames))
    fps = float(fps)
    n = max(1, int(np.ceil((duration - eps) * fps)))  # k < (duration - eps) * fps
    t = np.arange(n + 1, dtype=np.float64) / fps     # +1 and trim: ceil on floats can be off by one
    t = t[t < duration - eps]
    return t if len(t) else np.zeros(1)


# ---------------------------------------------------------------- resize / rotation

def _target_size(h: int, w: int, size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if h <= w:
            return int(size), max(1, int(w * size / h + 0.5))
        return max(1, int(h * size / w + 0.5)), int(size)
    th, tw = (int(v) for v in size)
    if th < 1 or tw < 1:
        raise ValueError(f"size must be positive, got {size}")
    return th, tw


def resize_frames(frames, size):
    """Resize (T, H, W, 3) or (H, W, 3) uint8 frames (or a `Frames`).

    size: an int sets the short side (aspect kept, long side rounded); a (height, width)
    pair sets the exact size. Area interpolation when shrinking both sides (no aliasing),
    bilinear otherwise.
    """
    if isinstance(frames, Frames):
        return Frames(resize_frames(frames.array, size), frames.timestamps, frames.indices,
                      frames.truncated)
    arr = np.asarray(frames)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected (T, H, W, C) or (H, W, C) frames, got shape {arr.shape}")
    h, w = arr.shape[1:3]
    th, tw = _target_size(h, w, size)
    if (th, tw) == (h, w):
        out = arr
    else:
        interp = cv2.INTER_AREA if (th <= h and tw <= w) else cv2.INTER_LINEAR
        out = np.empty((arr.shape[0], th, tw, arr.shape[3]), dtype=arr.dtype)
        for i, f in enumerate(arr):
            r = cv2.resize(np.ascontiguousarray(f), (tw, th), interpolation=interp)
            out[i] = r.reshape(th, tw, -1)
    return out[0] if single else out


# 2x2 coordinate maps (x right, y down) of each candidate array operation, for reading the
# display matrix: np.rot90(k=1) sends (x, y) -> (y, -x); a left-right mirror sends (x, y) -> (-x, y).
_ROT = np.array([[0, 1], [-1, 0]])
_FLIP = np.array([[-1, 0], [0, 1]])


def _matrix_ops(m: Sequence[int]) -> tuple[int, bool]:
    """(k, mirror) with display = mirror(rot90(frame, k)) for a display matrix in FFmpeg/QuickTime
    layout [a b u; c d v; x y w]: a stored point (x, y) is shown at (a x + c y, b x + d y)."""
    a, b, c, d = m[0], m[1], m[3], m[4]
    target = np.sign(np.array([[a, c], [b, d]], dtype=np.int64))
    for k in range(4):
        r = np.linalg.matrix_power(_ROT, k)
        for mirror in (False, True):
            if np.array_equal(_FLIP @ r if mirror else r, target):
                return k, mirror
    return 0, False  # not a multiple of 90 degrees: left as stored


def apply_display_matrix(frames: np.ndarray, matrix: Sequence[int] | None) -> np.ndarray:
    """Make (..., H, W, C) frames upright given a display matrix (9 ints, FFmpeg layout).

    Only rotations by multiples of 90 degrees and mirrors are applied; other angles are
    rare (and would need interpolation), they are left as stored."""
    if matrix is None:
        return frames
    k, mirror = _matrix_ops(matrix)
    out = np.rot90(frames, k=k, axes=(-3, -2)) if k else frames
    if mirror:
        out = out[..., :, ::-1, :]
    return np.ascontiguousarray(out) if (k or mirror) else out


def _display_matrix(frame) -> list[int] | None:
    try:
        for sd in frame.side_data:
            if getattr(sd.type, "name", str(sd.type)).endswith("DISPLAYMATRIX"):
                return np.frombuffer(bytes(sd), dtype="<i4")[:9].tolist()
    except Exception:  # side data API differences between PyAV versions: fall back below
        pass
    rot = getattr(frame, "rotation", 0) or 0
    if rot:
        k = int(round(rot / 90.0)) % 4
        r = np.linalg.matrix_power(_ROT, k)
        return [int(r[0, 0]), int(r[1, 0]), 0, int(r[0, 1]), int(r[1, 1]), 0, 0, 0, 1]
    return None


# ---------------------------------------------------------------- reading

def _open(path: Path):
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if isinstance(e, av.error.InvalidDataError):
            raise BadInputError(path, "not a video file, or damaged beyond reading "
                                      "(FFmpeg: invalid data found when processing input)") from None
        raise BadInputError(path, f"not a readable video (FFmpeg: {_ffmpeg_reason(e)})") from None
    if not container.streams.video:
        container.close()
        raise BadInputError(path, "has no video stream")
    return container


def _ffmpeg_reason(e) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.strip().rstrip(".") or type(e).__name__


def _stream_seconds(stream) -> float | None:
    """The video stream's own duration (not the container's, which counts audio too)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")  # matroska/webm keep it as a per-track tag
    if tag:
        m = re.match(r"^(\d+):(\d+):(\d+(?:\.\d+)?)$", tag.strip())
        if m:
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _eps(stream) -> float:
    """Tolerance for "frame time <= sample time". Containers round timestamps to their time
    base (to the nearest tick), so a frame may be stored up to half a tick late; when the
    nominal frame interval is a whole number of ticks, timestamps are exact and no slack is
    needed (a wider one would pick the next frame too early)."""
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate
    if not tb:
        return 1e-6
    if rate and (1 / (Fraction(rate) * Fraction(tb))).denominator == 1:
        return 1e-6
    eps = 0.5 * float(tb) + 1e-6
    if rate:
        eps = min(eps, 0.25 / float(rate))
    return eps


def _scan(container, stream, want_first_frame: bool):
    """One demux pass (no decoding except the first frame): frame times and end time."""
    tb = stream.time_base
    times, end, first = [], None, None
    try:
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            if ts is not None:
                t = float(ts * tb)
                times.append(t)
                if pkt.duration:
                    e = t + float(pkt.duration * tb)
                    end = e if end is None else max(end, e)
            if want_first_frame and first is None:
                try:
                    for fr in pkt.decode():
                        first = fr
                        break
                except av.error.FFmpegError:
                    pass
        if want_first_frame and first is None:
            for fr in stream.codec_context.decode(None):
                first = fr
                break
    except av.error.FFmpegError:
        pass  # a damaged tail: keep what was indexed
    return np.asarray(sorted(times), dtype=np.float64), end, first


def _duration_of(times: np.ndarray, end: float | None, stream) -> float:
    if len(times) == 0:
        return 0.0
    last_end = times[-1]
    if end is not None and end > times[-1]:
        last_end = end
    else:
        rate = stream.average_rate or stream.guessed_rate
        if len(times) > 1:
            last_end = times[-1] + float(np.median(np.diff(times)))
        elif rate:
            last_end = times[-1] + 1.0 / float(rate)
    return float(last_end - times[0])


def probe(path: str | Path) -> VideoInfo:
    """Size, rate, duration, frame count and rotation, by reading the packet index (videos are
    demuxed once but only their first frame is decoded; images read their header only)."""
    p = check_file(path)
    if media_kind(p) == "image":
        w, h, rot = image_info(p)
        return VideoInfo(str(p), w, h, 0.0, 0.0, 1, rot, "image")
    with _open(p) as container:
        stream = container.streams.video[0]
        times, end, first = _scan(container, stream, want_first_frame=True)
        if first is None:
            raise BadInputError(p, "no decodable video frames (damaged, truncated or unsupported codec)")
        k, _ = _matrix_ops(_display_matrix(first) or [1, 0, 0, 0, 1, 0, 0, 0, 1])
        w, h = first.width, first.height
        if k % 2:
            w, h = h, w
        n = int(len(times)) or int(stream.frames or 0) or 1
        duration = _duration_of(times, end, stream)
        fps = n / duration if duration > 0 else 0.0
        rate = stream.average_rate
        if rate and fps and abs(float(rate) - fps) <= 0.01 * fps:
            fps = float(rate)  # the exact rational rate rather than a rounded quotient
        return VideoInfo(str(p), int(w), int(h), float(fps), duration, n, (90 * k) % 360, "video")


def _decode(container, stream) -> Iterator:
    """Decoded frames in presentation order; stops (and reports) at damaged data."""
    try:
        for frame in container.decode(stream):
            yield frame
    except av.error.FFmpegError as e:
        yield _DecodeError(_ffmpeg_reason(e))


class _DecodeError:
    def __init__(self, reason: str):
        self.reason = reason


def _to_rgb(frame, size, reformatter: VideoReformatter) -> np.ndarray:
    # one reformatter per file keeps libswscale's context: VideoFrame.to_ndarray(format=...) builds a new
    # one per frame, 4x the time on the world's 64 px frames (same pixels, checked in tests/io)
    arr = reformatter.reformat(frame, format="rgb24").to_ndarray()
    arr = apply_display_matrix(arr, _display_matrix(frame))
    if size is not None:
        arr = resize_frames(arr, size)
    return np.ascontiguousarray(arr)


def read_frames(path: str | Path, *, fps: float | None = None, num_frames: int | None = None,
                size: int | tuple[int, int] | None = None) -> Frames:
    """Read a video (or an image, as one frame) as uint8 (T, H, W, 3) RGB, upright.

    fps: sample at this rate by timestamp (t_k = k / fps while t_k < duration).
    num_frames: exactly this many frames at t_k = k * duration / num_frames.
    neither: every frame, with its own timestamp.
    size: int = short side, (height, width) = exact; see `resize_frames`.
    An image always gives one frame (timestamps [0], indices [0]) whatever fps/num_frames say.
    """
    _check_sampling(fps, num_frames)
    p = check_file(path)
    if media_kind(p) == "image":
        arr = read_image(p)
        if size is not None:
            arr = resize_frames(arr, size)
        return Frames(arr[None], np.zeros(1), np.zeros(1, dtype=np.int64))

    planned = None
    if num_frames is not None:  # needs the duration before decoding: one demux pass
        with _open(p) as container:
            stream = container.streams.video[0]
            times, end, _ = _scan(container, stream, want_first_frame=False)
            planned = sample_times(_duration_of(times, end, stream), num_frames=num_frames)

    out_arrays: list[np.ndarray] = []
    out_times: list[float] = []
    out_idx: list[int] = []
    with _open(p) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        eps = _eps(stream)
        expected = _stream_seconds(stream)
        t0 = None
        prev = prev_t = prev_arr = None
        prev_i = -1
        n_decoded = 0
        k = 0
        error = None
        last_step = None
        stopped_early = False
        reformatter = VideoReformatter()

        def next_time(k):
            if planned is not None:
                return planned[k] if k < len(planned) else None
            return k / float(fps)

        def emit(t):
            nonlocal prev_arr
            if prev_arr is None:
                prev_arr = _to_rgb(prev, size, reformatter)
            out_arrays.append(prev_arr)
            out_times.append(t)
            out_idx.append(prev_i)

        for frame in _decode(container, stream):
            if isinstance(frame, _DecodeError):
                error = frame.reason
                break
            if frame.pts is not None and frame.time_base is not None:
                ft = float(frame.pts * frame.time_base)
            else:  # no timestamp: assume the nominal rate
                rate = stream.average_rate or stream.guessed_rate or 25
                ft = (t0 or 0.0) + n_decoded / float(rate)
            if t0 is None:
                t0 = ft
            t = ft - t0
            if prev is not None and t < prev_t:
                t = prev_t  # out-of-order timestamp: treat as simultaneous, later frame wins
            if prev is not None and t > prev_t:
                last_step = t - prev_t
            if fps is None and num_frames is None:
                prev, prev_t, prev_i, prev_arr = frame, t, n_decoded, None
                emit(t)
            else:
                # every sample time before this frame's time is shown by the previous frame
                while prev is not None:
                    ts = next_time(k)
                    if ts is None or not ts < t - eps:
                        break
                    emit(ts)
                    k += 1
                prev, prev_t, prev_i, prev_arr = frame, t, n_decoded, None
                if planned is not None and k == len(planned):
                    stopped_early = True  # every sample is taken: the rest need not be decoded
                    break
            n_decoded += 1

        if prev is None:
            reason = f"no decodable video frames ({error})" if error else \
                "no decodable video frames (damaged, truncated or unsupported codec)"
            raise BadInputError(p, reason)

        # the stream ended: the last frame is shown until its own end time
        if prev.duration and prev.time_base is not None:
            last_dur = float(prev.duration * prev.time_base)
        elif last_step:
            last_dur = last_step
        else:
            rate = stream.average_rate or stream.guessed_rate
            last_dur = 1.0 / float(rate) if rate else 0.0
        end = prev_t + last_dur
        if planned is not None:
            while k < len(planned):
                emit(planned[k])
                k += 1
        elif fps is not None:
            while True:
                ts = next_time(k)
                if not ts < end - eps:
                    break
                emit(ts)
                k += 1
            if k == 0:
                emit(0.0)

    # header duration well past the decoded end (2 frames or 5 %): the file was cut off
    truncated = error is not None or (not stopped_early and expected is not None
                                      and expected - end > max(2 * last_dur, 0.05 * expected))
    if truncated:
        what = f"decoding stopped: {error}" if error else \
            f"it ends at {end:.3f} s but its header says {expected:.3f} s"
        warnings.warn(f"{p}: truncated or damaged video ({what}); "
                      f"using the {n_decoded} frames that decoded", TruncatedVideoWarning,
                      stacklevel=2)
    return Frames(np.stack(out_arrays), np.asarray(out_times, dtype=np.float64),
                  np.asarray(out_idx, dtype=np.int64), truncated)


# ---------------------------------------------------------------- writing

_CONTAINER_FORMAT = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


def _encoder_available(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:
        return False


def _pick_encoder(ext: str) -> tuple[str, dict]:
    """(codec, options). h264 (libx264, crf 18: visually lossless) where the container takes it,
    else MPEG-4 part 2; VP9 for webm (VP8 if VP9 is missing)."""
    if ext == ".webm":
        # realtime / cpu-used 8: measured 8x faster than 'good' (60 frames of 640x360: 0.35 s
        # vs 2.7 s) for a mean abs pixel error of 5.4 vs 5.1 (libx264 crf 18: 5.1)
        fast = {"deadline": "realtime", "cpu-used": "8"}
        if _encoder_available("libvpx-vp9"):
            return "libvpx-vp9", {"crf": "20", "b:v": "0", "row-mt": "1", **fast}
        if _encoder_available("libvpx"):
            return "libvpx", {"crf": "10", "b:v": "20M", **fast}
        raise RuntimeError("this PyAV build has no VP9/VP8 encoder; write .mp4 instead")
    if ext != ".avi" and _encoder_available("libx264"):
        # mbtree off: with it, x264 gave different bytes (and decoded pixels) for the same frames on
        # small clips (32-96 px: 2-10 variants in 200 runs); off, 1 variant in 600. Same seed, same video.
        return "libx264", {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}
    return "mpeg4", {}


def _as_frames_array(frames) -> np.ndarray:
    if isinstance(frames, Frames):
        frames = frames.array
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f) for f in frames]) if len(frames) else np.zeros((0,))
    arr = np.asarray(frames)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[3] != 3 or arr.shape[0] == 0:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3) with T >= 1, "
                         f"got {arr.dtype} {arr.shape}")
    return arr


def _pad_even(arr: np.ndarray) -> np.ndarray:
    """yuv420p stores colour at half resolution, so encoders need even sizes: replicate the
    last row / column (content is not resampled)."""
    ph, pw = arr.shape[1] % 2, arr.shape[2] % 2
    if ph or pw:
        arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    return arr


def _rate(fps: float) -> Fraction:
    fps = float(fps)
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _write_av(tmp: str, ext: str, arr: np.ndarray, fps: float) -> None:
    codec, options = _pick_encoder(ext)
    arr = _pad_even(arr)
    t, h, w = arr.shape[:3]
    rate = _rate(fps)
    container_options = {"movflags": "+faststart"} if ext in (".mp4", ".mov") else {}
    with av.open(tmp, "w", format=_CONTAINER_FORMAT[ext], options=container_options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        if codec == "mpeg4":  # no constant-quality mode here: a generous bit rate instead
            stream.bit_rate = int(max(2_000_000, 0.5 * w * h * float(rate)))
        stream.options = options
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(arr[i], format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_gif(tmp: str, arr: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in arr]
    # GIF delays are whole 1/100 s; Pillow merges identical consecutive frames (timing kept).
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                   duration=1000.0 / float(fps), loop=0)


def write_video(path: str | Path, frames, fps: float = 8.0) -> Path:
    """Write uint8 (T, H, W, 3) frames, by extension, atomically (temp file + rename).

    .mp4 / .mov / .mkv: h264 (libx264, crf 18) else MPEG-4; .webm: VP9; .avi: MPEG-4;
    .gif: Pillow, adaptive palette. The yuv420p codecs need even sizes: an odd height or
    width is padded by one replicated row / column at the bottom / right.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"{p}: cannot write video with extension {p.suffix!r}; "
                         f"use one of {sorted(WRITE_EXTENSIONS)}")
    arr = _as_frames_array(frames)
    _rate(fps)
    with atomic_output(p, suffix=f".tmp{ext}") as tmp:
        if ext == ".gif":
            _write_gif(tmp, arr, fps)
        else:
            _write_av(tmp, ext, arr, fps)
    return p
