"""Building blocks for the self-contained HTML reports.

Every caption, id and path that goes into a page passes through `esc`; images are
embedded as data URIs so a report is one file that can be mailed around: `png_data_uri`,
`gif_data_uri`, `clip_data_uri` (a clip file as a small GIF); figures are SVG documents made by
`diffmem.io.figures` (`fig.data_uri()`).
"""
from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .video import read_frames, resize_frames

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f4f4f4}.strip img{margin-right:2px;image-rendering:pixelated}
.flag{color:#b00;font-weight:bold}.ok{color:#070}pre{background:#f7f7f7;padding:1em;overflow:auto}
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:0.85em;color:#555}
"""


def esc(value: Any) -> str:
    """Escape anything for HTML text or attribute context."""
    return html.escape("" if value is None else str(value), quote=True)


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


def img(uri: str, title: str = "", height: int | None = 96) -> str:
    h = f' height="{int(height)}"' if height else ""
    return f'<img src="{esc(uri)}" title="{esc(title)}" alt="{esc(title)}"{h}>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def config_block(config: Any) -> str:
    return f"<pre>{esc(json.dumps(config, indent=2, default=str))}</pre>"


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{body}</body></html>\n")
