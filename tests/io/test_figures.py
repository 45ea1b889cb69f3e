"""The report figures: histogram panels and ROC curves (drawn without pyplot)."""
import numpy as np

from diffmem.detect.evaluate import roc_curve
from diffmem.io.figures import HistPanel, histogram_figure, roc_figure
from diffmem.io.html import figure_png


def test_roc_figure_draws():
    fpr, tpr, _ = roc_curve([3, 2, 1, 0], [1, 1, 0, 0])
    fig = roc_figure({"content": (fpr, tpr, 1.0)})
    assert len(fig.axes) == 2


def test_histogram_panels_draw_what_they_are_given():
    a = np.array([0.1, 0.2, 0.2, 0.9])
    panels = [HistPanel(hists=[(a, {"label": "a"}), (a + 0.05, {"label": "b", "histtype": "step"})], bins=4,
                        range=(0.0, 1.0), lines=[(0.5, {"ls": "--", "label": "threshold"})], title="t", xlabel="x",
                        ylabel="y"),
              HistPanel(legend=False)]
    fig = histogram_figure(panels, panel_size=(3, 2))
    assert tuple(fig.get_size_inches()) == (6, 2)
    ax, empty = fig.axes
    counts = [p.get_height() for p in ax.containers[0]]
    assert counts == [3, 0, 0, 1]  # bins of width 0.25 over [0, 1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "threshold"]  # in drawing order
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("t", "x", "y")
    assert empty.get_legend() is None
    assert figure_png(fig).startswith("data:image/png;base64,")
