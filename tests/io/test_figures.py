"""The report figures (SVG drawn directly): what a test reads back from the document is what was given."""
import base64
import xml.etree.ElementTree as ET

import numpy as np

from diffmem.detect.evaluate import roc_curve
from diffmem.io.figures import HistPanel, LinePanel, histogram_figure, line_figure, roc_figure

NS = "{http://www.w3.org/2000/svg}"


def _tree(fig):
    root = ET.fromstring(fig.svg)  # well-formed XML, or this raises
    assert base64.b64decode(fig.data_uri().split(",", 1)[1]).decode() == fig.svg
    assert fig.data_uri().startswith("data:image/svg+xml;base64,")
    return root


def test_histogram_counts_bins_by_hand_and_labels_in_drawing_order():
    a = np.array([0.1, 0.2, 0.2, 0.9, 1.0, np.nan, -np.inf])
    panels = [HistPanel(hists=[(a, {"label": "a"}), (a + 0.05, {"label": "b", "histtype": "step"})], bins=4,
                        range=(0.0, 1.0), lines=[(0.5, {"ls": "--", "label": "threshold"})], title="t", xlabel="x",
                        ylabel="y"),
              HistPanel(legend=False)]
    fig = histogram_figure(panels, panel_size=(3, 2))
    root = _tree(fig)
    assert (fig.width, fig.height) == (600, 200) and root.get("width") == "600"
    bars = root.find(f"{NS}g[@class='hist']")
    # bins of width 0.25 over [0, 1]: 0.1, 0.2, 0.2 | - | - | 0.9 and 1.0 (the last bin holds its right edge);
    # NaN and -inf are not counted
    assert [int(r.get("data-count")) for r in bars] == [3, 0, 0, 2]
    step = root.find(f"{NS}polyline[@class='hist']")
    # shifted by 0.05: 0.15, 0.25, 0.25 -> 1 | 2 | - | 0.95 (1.05 is outside the range)
    assert step.get("data-counts") == "1 2 0 1" and step.get("data-label") == "b"
    line = root.find(f"{NS}line[@class='vline']")
    assert float(line.get("data-x")) == 0.5 and line.get("stroke-dasharray")
    legend = [t.text for t in root.iter(f"{NS}text") if t.text in ("a", "b", "threshold")]
    assert legend == ["a", "b", "threshold"]
    texts = {t.text for t in root.iter(f"{NS}text")}
    assert {"t", "x", "y"} <= texts
    assert len(list(root.iter(f"{NS}g"))) == 2  # hist + one legend: the second panel has neither


def test_bar_heights_are_proportional_to_counts():
    fig = histogram_figure([HistPanel(hists=[([0, 0, 0, 0, 1, 1], {})], bins=2, range=(0, 1))])
    rects = _tree(fig).find(f"{NS}g[@class='hist']")
    h = [float(r.get("height")) for r in rects]
    assert abs(h[0] / h[1] - 2.0) < 1e-3


def test_roc_figure_draws_each_curve_on_both_axes_as_steps():
    fpr, tpr, _ = roc_curve([3, 2, 1, 0], [1, 1, 0, 0])
    root = _tree(roc_figure({"content": (fpr, tpr, 1.0), "<motion>": (fpr, tpr, 0.5)}, title="a & b"))
    curves = [p for p in root.iter(f"{NS}polyline") if p.get("data-label")]
    assert [c.get("data-label") for c in curves] == ["content (AUC 1.000)", "<motion> (AUC 0.500)"] * 2
    # a step curve of k points has 2k - 1 vertices
    assert len(curves[0].get("points").split()) == 2 * len(fpr) - 1
    assert "a & b" in {t.text for t in root.iter(f"{NS}text")}


def test_line_figure_skips_unmeasured_points_and_marks_steps():
    fig = line_figure([LinePanel(lines=[(range(5), [0.1, None, 0.3, float("nan"), 0.5], {"label": "sigma"}),
                                        (range(5), [0.2] * 5, {"label": "lambda", "ls": "--"})],
                                 marks=[1, 4], marks_style={"color": "red", "label": "triggered"})])
    root = _tree(fig)
    sigma, lam = [p for p in root.iter(f"{NS}polyline")]
    assert len(sigma.get("points").split()) == 3 and len(lam.get("points").split()) == 5
    marks = root.find(f"{NS}g[@class='marks']")
    assert marks.get("data-x") == "1 4" and len(marks) == 2


def test_drawing_a_figure_imports_no_plotting_library(fresh_python):
    code = ("import sys; from diffmem.io.figures import HistPanel, histogram_figure; "
            "histogram_figure([HistPanel(hists=[([1, 2], {})])]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL', 'torch')))")
    assert fresh_python(code).strip() == "[]"
