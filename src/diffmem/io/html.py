"""Building blocks for the self-contained HTML reports: `esc`, `img`, `table`, `config_block`, `page`.

Every caption, id and path that goes into a page passes through `esc`. Images are embedded as data URIs,
so a report is one file that can be mailed around: frames and clips from `diffmem.io.embed`, figures as
SVG from `diffmem.io.figures` (`fig.data_uri()`). This module is text only (no image or video library),
so that a command whose report has only figures and tables does not import them.
"""
from __future__ import annotations

import html
import json
from typing import Any, Sequence

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
