"""The figures of the HTML reports, drawn as SVG: score histograms, ROC curves and line plots.

    fig = histogram_figure([HistPanel(hists=[(scores, {"label": "items"})], lines=[(tau, {"ls": "--"})])])
    fig = roc_figure({"content": (fpr, tpr, auc)}, "memorized vs novel")
    fig = line_figure([LinePanel(lines=[(x, y, {"label": "sigma"})], marks=[2, 5])])
    img(fig.data_uri(), "ROC")                       # diffmem.io.html: an <img> of the figure

The SVG is written directly (no plotting library): a report's figures cost milliseconds and no import,
which is most of a short command's start-up otherwise (`diffmem detect` spent 1.2 s of its 6 s drawing
two figures with matplotlib). Each drawn series carries its data in `data-*` attributes (a histogram
bar its count, a line its label), so a test can read back what was drawn. Styles use matplotlib's
vocabulary: color, alpha, lw, ls ("-", "--", ":"), label, histtype ("bar" or "step"); every text is
XML-escaped.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["HistPanel", "LinePanel", "SvgFigure", "histogram_figure", "line_figure", "roc_figure"]

DPI = 100  # pixels per inch of panel_size
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")  # matplotlib's default cycle, so that the reports keep their look
DASHES = {"-": None, "solid": None, "--": "6,3", "dashed": "6,3", ":": "1.5,2.5", "dotted": "1.5,2.5",
          "-.": "6,2,1.5,2", "dashdot": "6,2,1.5,2"}
MARGIN = {"left": 52, "right": 12, "top": 26, "bottom": 40}  # pixels around each panel's plot area


@dataclass
class HistPanel:
    """One panel of `histogram_figure`.

    hists: (values, style) pairs, each drawn as a histogram of `values` over `bins` (an int over `range`, or
    the bin edges) in order; non-finite values are left out. lines: (x, style) pairs drawn after them as
    vertical lines (thresholds). legend: draw this panel's legend.
    """

    hists: Sequence[tuple[Any, Mapping[str, Any]]] = ()
    bins: Any = 30
    range: tuple[float, float] | None = None
    lines: Sequence[tuple[float, Mapping[str, Any]]] = ()
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    legend: bool = True


@dataclass
class LinePanel:
    """One panel of `line_figure`: (x, y, style) lines (points whose y is None or NaN are left out and the
    line joins the points around them, e.g. steps where sigma was not measured), and `marks`: x
    positions ticked along the bottom of the plot (e.g. the steps where something triggered)."""

    lines: Sequence[tuple[Any, Any, Mapping[str, Any]]] = ()
    marks: Sequence[float] = ()
    marks_style: Mapping[str, Any] = field(default_factory=lambda: {"color": "red", "label": "marked"})
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    legend: bool = True


class SvgFigure:
    """A drawn figure: `.svg` (the document), `.width` / `.height` (pixels), `data_uri()`."""

    def __init__(self, svg: str, width: int, height: int):
        self.svg, self.width, self.height = svg, width, height

    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()

    def __repr__(self) -> str:
        return f"SvgFigure({self.width}x{self.height})"


def histogram_figure(panels: Sequence[HistPanel], *, panel_size: tuple[float, float] = (4.5, 3.2),
                     legend_fontsize: float = 7) -> SvgFigure:
    """Histograms side by side, one panel each (`panel_size` inches per panel, 100 pixels an inch)."""
    w, h = int(panel_size[0] * DPI), int(panel_size[1] * DPI)
    body = []
    for i, p in enumerate(panels):
        body.append(_hist_panel(p, i * w, 0, w, h, legend_fontsize))
    return _figure(body, w * max(1, len(panels)), h)


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC") -> SvgFigure:
    """One ROC curve per entry {label: (fpr, tpr, auc)}: linear axes, and log-FPR axes (FPR 1 % and 3 %
    marked)."""
    w, h, top = 450, 380, 22
    body = [_text(w, 15, title, size=12, anchor="middle", weight="bold")]
    for j, log in enumerate((False, True)):
        ax = _Axes(j * w, top, w, h - top, (1e-4, 1.0) if log else (0.0, 1.0), (0.0, 1.02), xlog=log)
        parts = [ax.frame(xlabel="false positive rate" + (" (log)" if log else ""), ylabel="true positive rate")]
        chance = np.logspace(-4, 0, 50) if log else np.array([0.0, 1.0])
        parts.append(ax.polyline(chance, chance, {"color": "grey", "lw": 0.8, "ls": ":"}))
        if log:
            parts += [ax.vline(0.01, {"color": "#b00", "lw": 0.6, "ls": "--"}),
                      ax.vline(0.03, {"color": "#b80", "lw": 0.6, "ls": "--"})]
        entries = []
        for k, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
            fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
            x = np.clip(fpr, 1e-4, 1) if log else fpr
            # a step curve held until the next point ("post"), as ROC curves are drawn
            xs, ys = np.repeat(x, 2)[1:], np.repeat(tpr, 2)[:-1]
            style = {"color": COLORS[k % len(COLORS)], "lw": 1.5, "label": f"{label} (AUC {auc:.3f})"}
            parts.append(ax.polyline(xs, ys, style))
            entries.append(style)
        if not log:
            parts.append(ax.legend(entries, 7, corner="lower right"))
        body.append("".join(parts))
    return _figure(body, 2 * w, h)


def line_figure(panels: Sequence[LinePanel], *, panel_size: tuple[float, float] = (4.2, 2.4),
                legend_fontsize: float = 6) -> SvgFigure:
    """Line plots side by side, one panel each (`panel_size` inches per panel)."""
    w, h = int(panel_size[0] * DPI), int(panel_size[1] * DPI)
    body = []
    for i, p in enumerate(panels):
        xs = [float(v) for x, _, _ in p.lines for v in np.asarray(x, np.float64).ravel()] + [float(m) for m in p.marks]
        ys = [float(v) for _, y, _ in p.lines for v in _floats(y)]
        ax = _Axes(i * w, 0, w, h, _span(xs), _span(ys, pad=0.05))
        parts = [ax.frame(p.title, p.xlabel, p.ylabel)]
        entries = []
        for k, (x, y, style) in enumerate(p.lines):
            style = {"color": COLORS[k % len(COLORS)], "lw": 1.5, **style}
            x, y = np.asarray(x, np.float64), _floats(y)
            ok = np.isfinite(x) & np.isfinite(y)
            parts.append(ax.polyline(x[ok], y[ok], style))
            entries.append(style)
        if len(p.marks):
            parts.append(ax.marks(p.marks, p.marks_style))
            entries.append(p.marks_style)
        if p.legend and any(e.get("label") for e in entries):
            parts.append(ax.legend(entries, legend_fontsize))
        body.append("".join(parts))
    return _figure(body, w * max(1, len(panels)), h)


# ---- drawing ---------------------------------------------------------------------------------------------

def _figure(body: Sequence[str], width: int, height: int) -> SvgFigure:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">'
           f'<rect width="{width}" height="{height}" fill="white"/>{"".join(body)}</svg>')
    return SvgFigure(svg, width, height)


def _hist_panel(p: HistPanel, x0: float, y0: float, w: float, h: float, legend_fontsize: float) -> str:
    series = [(_finite(v), dict(s)) for v, s in p.hists]
    if np.ndim(p.bins) == 0:
        lo, hi = p.range if p.range is not None else _span([x for v, _ in series for x in v])
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, int(p.bins) + 1)
    else:
        edges = np.asarray(p.bins, np.float64)
    counts = [_counts(v, edges) for v, _ in series]
    top = max([c.max() for c in counts if c.size] + [1])
    xs = [float(edges[0]), float(edges[-1])] + [float(x) for x, _ in p.lines]
    ax = _Axes(x0, y0, w, h, _span(xs, pad=0.02), (0.0, top * 1.05))
    parts = [ax.frame(p.title, p.xlabel, p.ylabel, integer_y=True)]
    entries = []
    for k, (c, (_, style)) in enumerate(zip(counts, series)):
        style = {"color": COLORS[k % len(COLORS)], **style}
        parts.append(ax.bars(edges, c, style))
        entries.append(style)
    for x, style in p.lines:
        style = {"color": "black", "lw": 1, **style}
        parts.append(ax.vline(x, style))
        entries.append(style)
    if p.legend and any(e.get("label") for e in entries):
        parts.append(ax.legend(entries, legend_fontsize))
    return "".join(parts)


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Values per bin: [e_i, e_i+1) except the last bin, which includes its right edge; values outside the
    edges are not counted (numpy's and matplotlib's rule)."""
    if values.size == 0 or edges.size < 2:
        return np.zeros(max(edges.size - 1, 0), dtype=np.int64)
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = edges.size - 2
    ok = (idx >= 0) & (idx < edges.size - 1)
    return np.bincount(idx[ok], minlength=edges.size - 1)


class _Axes:
    """Data -> pixel mapping of one panel's plot area, and its elements."""

    def __init__(self, x0, y0, w, h, xlim, ylim, xlog: bool = False):
        self.left, self.top = x0 + MARGIN["left"], y0 + MARGIN["top"]
        self.w, self.h = w - MARGIN["left"] - MARGIN["right"], h - MARGIN["top"] - MARGIN["bottom"]
        self.xlim, self.ylim, self.xlog = xlim, ylim, xlog

    def px(self, x) -> np.ndarray:
        x = np.asarray(x, np.float64)
        lo, hi = self.xlim
        if self.xlog:
            x, lo, hi = np.log10(np.maximum(x, 1e-300)), math.log10(lo), math.log10(hi)
        return self.left + (x - lo) / (hi - lo) * self.w

    def py(self, y) -> np.ndarray:
        lo, hi = self.ylim
        return self.top + self.h - (np.asarray(y, np.float64) - lo) / (hi - lo) * self.h

    def frame(self, title=None, xlabel=None, ylabel=None, integer_y: bool = False) -> str:
        out = [f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.w:.1f}" height="{self.h:.1f}" '
               f'fill="none" stroke="black" stroke-width="0.8"/>']
        bottom = self.top + self.h
        xt = _log_ticks(*self.xlim) if self.xlog else _ticks(*self.xlim)
        for t in xt:
            x = float(self.px(t))
            out.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" stroke="black" '
                       f'stroke-width="0.8"/>' + _text(x, bottom + 14, _tick_label(t, self.xlog), 9, "middle"))
        for t in _ticks(*self.ylim, integer=integer_y):
            y = float(self.py(t))
            out.append(f'<line x1="{self.left - 4:.1f}" y1="{y:.1f}" x2="{self.left:.1f}" y2="{y:.1f}" '
                       f'stroke="black" stroke-width="0.8"/>' + _text(self.left - 6, y + 3, _tick_label(t), 9, "end"))
        if title:
            out.append(_text(self.left + self.w / 2, self.top - 8, title, 11, "middle"))
        if xlabel:
            out.append(_text(self.left + self.w / 2, bottom + 30, xlabel, 10, "middle"))
        if ylabel:
            cx, cy = self.left - 40, self.top + self.h / 2
            out.append(f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" text-anchor="middle" '
                       f'transform="rotate(-90 {cx:.1f} {cy:.1f})">{escape(str(ylabel))}</text>')
        return "".join(out)

    def bars(self, edges: np.ndarray, counts: np.ndarray, style: Mapping[str, Any]) -> str:
        label = _attr(style.get("label"))
        xs, y0 = self.px(edges), float(self.py(0))
        if style.get("histtype", "bar") == "step":
            pts = [(xs[0], y0)]
            for i, c in enumerate(counts):
                y = float(self.py(c))
                pts += [(xs[i], y), (xs[i + 1], y)]
            pts.append((xs[-1], y0))
            data = " ".join(str(int(c)) for c in counts)
            return (f'<polyline class="hist" data-label="{label}" data-counts="{data}" fill="none" '
                    f'points="{_points(pts)}"{_stroke(style, 1.0)}/>')
        alpha = float(style.get("alpha", 1.0))
        rects = "".join(
            f'<rect data-count="{int(c)}" x="{xs[i]:.2f}" y="{float(self.py(c)):.2f}" width="{xs[i + 1] - xs[i]:.2f}" '
            f'height="{y0 - float(self.py(c)):.2f}"/>' for i, c in enumerate(counts))
        return (f'<g class="hist" data-label="{label}" fill="{_attr(style["color"])}" fill-opacity="{alpha:g}">'
                f'{rects}</g>')

    def vline(self, x: float, style: Mapping[str, Any]) -> str:
        px = float(self.px(x))
        return (f'<line class="vline" data-x="{float(x):.6g}" data-label="{_attr(style.get("label"))}" '
                f'x1="{px:.2f}" y1="{self.top:.1f}" x2="{px:.2f}" y2="{self.top + self.h:.1f}"{_stroke(style, 1.0)}/>')

    def polyline(self, x, y, style: Mapping[str, Any]) -> str:
        pts = list(zip(self.px(x), self.py(y)))
        return (f'<polyline class="line" data-label="{_attr(style.get("label"))}" fill="none" '
                f'points="{_points(pts)}"{_stroke(style, 1.5)}/>')

    def marks(self, xs: Sequence[float], style: Mapping[str, Any]) -> str:
        y = self.top + self.h
        ticks = "".join(f'<line x1="{float(self.px(x)):.2f}" y1="{y - 8:.1f}" x2="{float(self.px(x)):.2f}" '
                        f'y2="{y:.1f}"/>' for x in xs)
        return (f'<g class="marks" data-label="{_attr(style.get("label"))}" data-x="{" ".join(f"{x:g}" for x in xs)}"'
                f'{_stroke(style, 1.5)}>{ticks}</g>')

    def legend(self, entries: Sequence[Mapping[str, Any]], fontsize: float, corner: str = "upper right") -> str:
        entries = [e for e in entries if e.get("label")]
        line_h = fontsize + 4
        width = 26 + 0.6 * fontsize * max(len(str(e["label"])) for e in entries)
        x = self.left + self.w - width - 4
        y = self.top + 4 if corner == "upper right" else self.top + self.h - 4 - line_h * len(entries) - 4
        out = [f'<g class="legend"><rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
               f'height="{line_h * len(entries) + 4:.1f}" fill="white" fill-opacity="0.8" stroke="#ccc"/>']
        for i, e in enumerate(entries):
            cy = y + 2 + line_h * (i + 0.5)
            out.append(f'<line x1="{x + 4:.1f}" y1="{cy:.1f}" x2="{x + 20:.1f}" y2="{cy:.1f}"'
                       f'{_stroke({"lw": 2, **e}, 2)}/>' + _text(x + 24, cy + fontsize / 3, e["label"], fontsize))
        out.append("</g>")
        return "".join(out)


def _stroke(style: Mapping[str, Any], lw: float) -> str:
    dash = DASHES.get(style.get("ls", "-"))
    alpha = style.get("alpha")
    return (f' stroke="{_attr(style.get("color", "black"))}" stroke-width="{float(style.get("lw", lw)):g}"'
            + (f' stroke-dasharray="{dash}"' if dash else "") + (f' stroke-opacity="{float(alpha):g}"' if alpha else ""))


def _text(x: float, y: float, s: Any, size: float = 10, anchor: str = "start", weight: str = "normal") -> str:
    w = f' font-weight="{weight}"' if weight != "normal" else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size:g}" text-anchor="{anchor}"{w}>{escape(str(s))}</text>'


def _attr(s: Any) -> str:
    return "" if s is None else escape(str(s), quote=True)


def _points(pts) -> str:
    return " ".join(f"{float(x):.2f},{float(y):.2f}" for x, y in pts)


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in np.asarray(values, dtype=object).ravel()],
                      np.float64)


def _finite(values) -> np.ndarray:
    v = _floats(values)
    return v[np.isfinite(v)]


def _span(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return 0.0, 1.0
    lo, hi = min(v), max(v)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    d = (hi - lo) * pad
    return lo - d, hi + d


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About `n` round ticks (1, 2, 2.5 or 5 x 10^k apart) inside [lo, hi]."""
    raw = (hi - lo) / n
    if raw <= 0 or not math.isfinite(raw):
        return [lo]
    k = 10 ** math.floor(math.log10(raw))
    step = next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0 ** e for e in range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)]


def _tick_label(t: float, log: bool = False) -> str:
    if log:
        return f"1e{round(math.log10(t))}" if t < 0.01 else f"{t:g}"
    return f"{t:.4g}"
