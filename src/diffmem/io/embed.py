"""Frames and clips embedded in the HTML reports as data URIs: `png_data_uri`, `gif_data_uri`,
`clip_data_uri` (a clip file as a small GIF, at its own rate)."""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from .video import read_frames, resize_frames

__all__ = ["png_data_uri", "gif_data_uri", "clip_data_uri"]


def png_data_uri(image: np.ndarray) -> str:
    """uint8 (H, W, 3) or (H, W) array -> data URI of a PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def gif_data_uri(frames: np.ndarray, fps: float = 8.0) -> str:
    """uint8 (T, H, W, 3) -> data URI of an animated GIF."""
    ims = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return "data:image/gif;base64," + base64.b64encode(buf.getvalue()).decode()


def clip_data_uri(path, fps: float | None = None, size: int = 64, max_frames: int = 16) -> str | None:
    """A small animated GIF data URI of a clip (a PNG for an image), short side `size`; None when it cannot
    be read. It plays at the clip's own rate (a 4 fps sample beside an 8 fps original), at most `max_frames`
    frames: a longer clip is shown whole at a lower rate."""
    try:
        frames = read_frames(path)
    except Exception:  # a report shows the ids even when a file went missing since it was made
        return None
    fr, ts = frames.array, np.asarray(frames.timestamps, dtype=float)
    if fps is None and len(ts) > 1 and ts[-1] > ts[0]:
        fps = (len(ts) - 1) / (ts[-1] - ts[0])
    if len(fr) > max_frames:
        step = int(np.ceil(len(fr) / max_frames))
        fr, fps = fr[::step], (fps or 8.0) / step
    fr = resize_frames(fr, size)
    return png_data_uri(fr[0]) if len(fr) == 1 else gif_data_uri(fr, fps or 8.0)
