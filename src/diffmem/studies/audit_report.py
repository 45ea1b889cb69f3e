"""The HTML page of `diffmem audit` (OUT/report.html); every text from data passes through `esc`."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import BadInputError
from ..index.content import read_item_frames
from ..io.embed import png_data_uri
from ..io.figures import HistPanel, histogram_figure
from ..io.html import config_block, esc, img, page, table

MAX_REPORT_ITEMS = 100  # flagged items shown with pictures in report.html (all are in the tables)


def score_panel(scores: np.ndarray, tau: float) -> HistPanel:
    """The content-score histogram: every finite score inside its range (an exact copy scores 1 up to
    float rounding, e.g. 1.0000002, and must be counted), tau_c and the SSCD conventions 0.5 / 0.4 marked."""
    lines = [(tau, {"color": "#b00", "ls": "--", "label": f"tau_c = {tau:g}"})]
    lines += [(t, {"color": c, "ls": ":", "label": f"{t:g}"}) for t, c in ((0.5, "#888"), (0.4, "#bbb")) if abs(t - tau) > 1e-9]
    scores = np.asarray(scores, np.float64)
    scores = scores[np.isfinite(scores)]
    span = (min(0.0, float(scores.min())), max(1.0, float(scores.max()))) if scores.size else None
    return HistPanel(hists=[(scores, {"color": "#4a7fb5"})] if scores.size else [],
                     bins=min(40, max(5, scores.size)), range=span, lines=lines,
                     xlabel="content score (max over frames of the nearest-training-frame similarity)", ylabel="items")


def _histogram(scores: np.ndarray, tau: float) -> str:
    return histogram_figure([score_panel(scores, tau)], panel_size=(6, 2.6), legend_fontsize=8).data_uri()


class _TrainFrames:
    """Reads training frames for the report, one file at a time (cached)."""

    def __init__(self, fps, paths: dict):
        self.fps, self.paths, self.cache = fps, paths, {}

    def get(self, train_id: str | None, frame: int | None):
        path = self.paths.get(train_id)
        if path is None or frame is None:
            return None
        if path not in self.cache:
            try:
                self.cache = {path: read_item_frames(path, self.fps).array}  # keep one file in memory
            except (BadInputError, OSError):
                self.cache = {path: None}
        arr = self.cache[path]
        return arr[frame] if arr is not None and 0 <= frame < len(arr) else None


def render_report(result, *, index=None, fps=None, max_items: int = MAX_REPORT_ITEMS,
                  frames_per_item: int = 8, audit_parts: Sequence = ()) -> str:
    """The audit's page for an `AuditResult`: summary, score histogram, flagged items with their frames
    beside the matched training frames (and each part's own block), every item, the configuration."""
    s = result.summary
    tau = s["threshold"]
    scores = np.array([it["content_score"] for it in result.items], dtype=np.float64)
    tab = s["table"]
    parts = [
        "<h2>Summary</h2>",
        table(["generated", "audited", "skipped (generated)", "skipped (train)", f"content > tau_c ({tau:g})",
               "Top-5 %", "Top-1", "% > 0.5", "% > 0.4"],
              [[s["n_generated"], s["n_audited"], s["n_skipped_generated"], s["n_skipped_train"],
                s["n_content_memorized"], _f(tab.get("top5_pct")), _f(tab.get("top1")),
                _f(tab.get("pct_above_0.5")), _f(tab.get("pct_above_0.4"))]]),
        table(["verdict", "items"], [[k, v] for k, v in s["verdicts"].items()]),
        "<h2>Score distribution</h2>", img(_histogram(scores, tau), "score distribution", height=None),
    ]
    flagged = sorted(result.flagged, key=lambda r: -r["content_score"])
    parts.append(f"<h2>Flagged items ({len(flagged)})</h2>")
    if len(flagged) > max_items:
        parts.append(f"<p>Pictures for the {max_items} highest-scoring; all are in the table below.</p>")
    paths = {}
    if index is not None and flagged:
        meta = index.metadata
        wanted = {f.get("train_id") for r in flagged[:max_items] for f in r.get("frames", [])}
        sub = meta[meta["item_id"].isin(wanted)]
        paths = dict(zip(sub["item_id"], sub["path"]))
    train = _TrainFrames(fps, paths)
    for r in flagged[:max_items]:
        parts.append(_item_block(r, train, fps, frames_per_item, tau))
        parts.extend(p.html(r) for p in audit_parts if hasattr(p, "html"))
    rows = [[r["id"], r["verdict"], _f(r["content_score"]), _f(r["coverage"]),
             (r.get("content_match") or {}).get("train_id"), (r.get("content_match") or {}).get("frame"),
             r.get("caption", "")] for r in sorted(result.items, key=lambda r: -r["content_score"])]
    parts += ["<h2>All items</h2>",
              table(["id", "verdict", "content score", "coverage", "train id", "train frame", "caption"], rows)]
    if result.skipped:
        parts += ["<h2>Skipped</h2>",
                  table(["set", "id", "path", "reason"],
                        [[k.get("set"), k.get("id"), k.get("path"), k.get("reason")] for k in result.skipped])]
    parts += ["<h2>Configuration</h2>", config_block(result.config)]
    return page("diffmem audit", "\n".join(parts))


def _item_block(r: dict, train: _TrainFrames, fps, n: int, tau: float) -> str:
    m = r.get("content_match") or {}
    head = (f"<h3>{esc(r['id'])} <span class='flag'>{esc(r['verdict'])}</span></h3>"
            f"<p>content score {esc(_f(r['content_score']))}, coverage {esc(_f(r['coverage']))}; best match "
            f"{esc(m.get('train_id'))} frame {esc(m.get('frame'))} (similarity {esc(_f(m.get('similarity')))})<br>"
            f"caption: {esc(r.get('caption', ''))}<br>matched caption: {esc(m.get('caption') or '')}<br>"
            f"path: {esc(r.get('path'))}</p>")
    try:
        gen = read_item_frames(r["path"], fps).array
    except (BadInputError, OSError):
        return head + "<p>(generated file no longer readable)</p>"
    frames = r.get("frames", [])
    if not frames:
        return head
    # the best frame and evenly spaced others, in time order
    pick = sorted(set([r.get("best_frame", 0)] + list(np.linspace(0, len(frames) - 1, n).round().astype(int))))
    pick = sorted(pick, key=lambda j: (j != r.get("best_frame", 0), j))[:n]
    pick.sort()
    top, bottom = [], []
    for j in pick:
        f = frames[j]
        cls = "flag" if f["similarity"] > tau else ""
        g = gen[f["frame"]] if f["frame"] < len(gen) else None
        top.append(f"<figure>{img(png_data_uri(g), 'generated frame') if g is not None else '?'}"
                   f"<figcaption class='{cls}'>frame {esc(f['frame'])}: {esc(_f(f['similarity']))}</figcaption></figure>")
        t = train.get(f.get("train_id"), f.get("train_frame"))
        top_train = img(png_data_uri(t), "training frame") if t is not None else "(not readable)"
        bottom.append(f"<figure>{top_train}<figcaption>{esc(f.get('train_id'))} #{esc(f.get('train_frame'))}"
                      f"</figcaption></figure>")
    return (head + "<div class='strip'><b>generated</b><br>" + "".join(top) + "</div>"
            "<div class='strip'><b>nearest training frames</b><br>" + "".join(bottom) + "</div>")


def _f(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3f}"
    return str(v)
