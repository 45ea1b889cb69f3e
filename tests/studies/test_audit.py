"""`diffmem.studies.audit` on a planted-copy corpus (see `_planted`): copies edited by every listed edit
are found with the right match, unrelated items are not flagged, a saved index gives the same results
as the training folder, corrupt items are reported as skipped, a killed audit resumes."""
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _planted import make_corpus, per_edit_table  # noqa: E402

from diffmem.errors import DiffmemError, PolicyMismatchError  # noqa: E402
from diffmem.features.edits import EDITS  # noqa: E402
from diffmem.index import build_content_index  # noqa: E402
from diffmem.studies import audit as audit_mod  # noqa: E402
from diffmem.studies.audit import VERDICTS, audit, verdict  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def from_folder(corpus):
    return audit(corpus.generated, corpus.train, corpus.root / "out-folder", motion=False, progress=False)


def test_verdict_truth_table():
    assert [verdict(c, m) for c in (False, True) for m in (None, False, True)] == \
        ["none", "none", "motion", "content", "content", "both"]
    assert set(VERDICTS) == {"content", "motion", "both", "none"}


def test_planted_copies_are_found_with_the_right_match(from_folder, corpus):
    table = per_edit_table(from_folder.items, corpus)
    print("\nper-edit precision / recall:", json.dumps(table, indent=1))
    for edit in EDITS:
        assert table[edit]["recall"] == 1.0, (edit, table[edit])
        assert table[edit]["precision"] == 1.0, (edit, table[edit])
    assert table["_unrelated"]["false_positives"] == 0
    by_id = {it["id"]: it for it in from_folder.items}
    for gid, src in corpus.source.items():
        assert by_id[gid]["verdict"] == "content" and by_id[gid]["content_match"]["train_id"] == src
    for gid in corpus.unrelated:
        assert by_id[gid]["verdict"] == "none"


def test_outputs_and_their_format(from_folder, corpus):
    out = corpus.root / "out-folder"
    doc = json.loads((out / "audit.json").read_text())
    assert set(doc) == {"config", "summary", "items", "skipped"}
    n_gen = len(corpus.source) + len(corpus.unrelated)
    assert doc["summary"]["n_audited"] == n_gen and doc["summary"]["n_generated"] == n_gen + 1
    it = next(i for i in doc["items"] if i["id"] == "blur-0")
    for key in ("id", "path", "content_score", "content_match", "verdict", "coverage", "frames"):
        assert key in it
    assert set(it["content_match"]) >= {"train_id", "frame", "similarity"}
    assert it["content_match"]["similarity"] == pytest.approx(it["content_score"])
    assert "motion_score" not in it
    cfg = doc["config"]
    assert cfg["content"]["fingerprint"] == cfg["content"]["descriptor_policy"]["fingerprint"]
    assert cfg["content"]["threshold"] == pytest.approx(0.817) and cfg["fps"] == 8.0
    assert "packages" in cfg["environment"]
    df = pd.read_parquet(out / "audit.parquet")
    assert len(df) == n_gen and df["id"].is_unique
    assert set(df.columns) >= {"id", "content_score", "coverage", "verdict", "match_train_id", "match_frame"}
    assert (df.set_index("id").loc["blur-0", "match_train_id"]) == corpus.source["blur-0"]


def test_corrupt_items_are_skipped_and_the_rest_completes(from_folder):
    sk = {(s["set"], s["id"]) for s in from_folder.skipped}
    assert sk == {("generated", "corrupt-gen"), ("train", "corrupt-train")}
    assert all(s["reason"] and s["path"].endswith("corrupt.mp4") for s in from_folder.skipped)
    assert from_folder.summary["n_skipped_generated"] == 1 and from_folder.summary["n_skipped_train"] == 1


def test_report_is_self_contained_and_escaped(from_folder, corpus):
    html = (corpus.root / "out-folder" / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;astronaut&lt;/b&gt; &amp; co" in html  # a training caption shown with its match
    assert html.count("data:image/png;base64,") >= 2 * len(corpus.source)  # generated + matched training frames
    assert "Score distribution" in html and "Configuration" in html and "corrupt-gen" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere


def test_saved_index_gives_identical_results(from_folder, corpus):
    build_content_index(corpus.train, corpus.root / "INDEX", progress=False)
    from_index = audit(corpus.generated, corpus.root / "INDEX", corpus.root / "out-index", motion=False, progress=False)
    assert from_index.items == from_folder.items
    strip = lambda s: {k: v for k, v in s.items() if k != "seconds"}  # noqa: E731
    assert strip(from_index.summary) == strip(from_folder.summary)
    assert from_index.config["reference_kind"] == "index" and from_folder.config["reference_kind"] == "train"


def test_killed_audit_resumes_from_finished_items(corpus, monkeypatch):
    """Items are scored in chunks (here of 2); a kill during the third chunk keeps the first two chunks' items."""
    out = corpus.root / "out-resume"
    real = audit_mod.ContentPart.score_many
    calls = {"chunks": 0, "items": 0}

    def dies(self, items, frames):
        calls["chunks"] += 1
        if calls["chunks"] == 3:
            raise KeyboardInterrupt
        calls["items"] += len(items)
        return real(self, items, frames)

    monkeypatch.setattr(audit_mod, "AUDIT_CHUNK", 2)
    monkeypatch.setattr(audit_mod.ContentPart, "score_many", dies)
    with pytest.raises(KeyboardInterrupt):
        audit(corpus.generated, corpus.root / "INDEX", out, motion=False, progress=False)
    assert len(list((out / "items").glob("*.json"))) == 4
    calls.update(chunks=-1000, items=0)
    first = audit(corpus.generated, corpus.root / "INDEX", out, motion=False, progress=False)
    assert calls["items"] == len(first.items) - 4  # the four finished items were not scored again
    from diffmem.data.manifest import load_manifest

    # in the manifest's order, though the resumed items were restored before the others were scored
    unreadable = {s["id"] for s in first.skipped}
    assert [r["id"] for r in first.items] == [it.id for it in load_manifest(corpus.generated).items
                                              if it.id not in unreadable]
    # a different threshold invalidates the stored items
    calls["items"] = 0
    again = audit(corpus.generated, corpus.root / "INDEX", out, threshold=0.99, motion=False, progress=False)
    assert calls["items"] == len(first.items)
    assert again.summary["threshold"] == 0.99


def test_bad_settings_are_refused(corpus, tmp_path):
    with pytest.raises(DiffmemError, match="fps"):
        audit(corpus.generated, corpus.root / "INDEX", tmp_path / "o", fps=2.0, motion=False, progress=False)

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 4)

    torch.jit.script(Tiny()).save(str(tmp_path / "m.pt"))
    with pytest.raises(PolicyMismatchError):
        audit(corpus.generated, corpus.root / "INDEX", tmp_path / "o", descriptor=f"sscd:{tmp_path / 'm.pt'}",
              motion=False, progress=False)


def test_the_score_histogram_counts_exact_copies_above_one():
    """An exact copy scores 1 up to float rounding; the histogram used to cut its range at 1.0 and drop
    those items (52 of 289 in the reliability issue's run)."""
    import numpy as np

    from diffmem.studies.audit_report import score_panel

    scores = np.array([0.2, 0.5, 0.81, 1.0000002, 1.0000002, float("-inf")])
    panel = score_panel(scores, 0.817)
    (values, _), = panel.hists
    lo, hi = panel.range
    counts, _ = np.histogram(values, bins=panel.bins, range=panel.range)
    assert counts.sum() == 5 and hi >= 1.0000002 and lo <= 0.0  # every finite score is counted


def test_an_empty_generated_set_is_an_error_before_any_work(tmp_path):
    from diffmem.errors import BadInputError

    (tmp_path / "gen").mkdir()
    with pytest.raises(BadInputError, match="no generated media item to audit"):
        audit(tmp_path / "gen", tmp_path / "nothing-built-yet", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train_index").exists()
