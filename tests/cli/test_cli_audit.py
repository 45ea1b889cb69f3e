"""`diffmem index build|info` and `diffmem audit` through diffmem.cli.main."""
import json

import pandas as pd
import pytest
import torch

from diffmem import cli
from diffmem.world.clips import ClipSpec, render_clip
from diffmem.features.edits import apply_edit
from diffmem.io.video import write_video


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-audit")
    (root / "train").mkdir()
    (root / "gen").mkdir()
    a = render_clip(ClipSpec.make("cat", "grass", "linear", "right", size=64, n_frames=8))
    b = render_clip(ClipSpec.make("rocket", "bricks", "circle", "cw", size=64, n_frames=8))
    write_video(root / "train" / "a.mp4", a, fps=8)
    write_video(root / "train" / "b.mp4", b, fps=8)
    (root / "train" / "a.txt").write_text("a cat <i>runs</i>")  # sidecar caption
    write_video(root / "gen" / "copy.mp4", apply_edit("blur", b), fps=8)
    write_video(root / "gen" / "other.mp4", render_clip(ClipSpec.make("coin", "stars", "zoom_in", size=64, n_frames=8)), fps=8)
    (root / "gen" / "broken.mp4").write_bytes(b"definitely not a video")
    return root


def test_index_build_info_then_audit(sets, capsys):
    idx = sets / "INDEX"
    assert cli.main(["index", "build", str(sets / "train"), "--out", str(idx), "--fps", "4"]) == 0
    out = capsys.readouterr().out
    assert "8 frames of 2 items" in out and "builtin" in out
    assert cli.main(["index", "info", str(idx)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_vectors"] == 8 and info["factory"] == "Flat" and info["config"]["fps"] == 4.0
    # again: nothing to add
    assert cli.main(["index", "build", str(sets / "train"), "--out", str(idx), "--fps", "4"]) == 0
    assert "0 added now, 2 already there" in capsys.readouterr().out

    assert cli.main(["audit", str(sets / "gen"), str(idx), "--out", str(sets / "out")]) == 0
    cap = capsys.readouterr()
    assert "2 items audited, 1 content-memorized" in cap.out
    assert "broken" in cap.err
    doc = json.loads((sets / "out" / "audit.json").read_text())
    items = {it["id"]: it for it in doc["items"]}
    assert items["copy"]["verdict"] == "content" and items["copy"]["content_match"]["train_id"] == "b"
    assert items["other"]["verdict"] == "none"
    assert [s["id"] for s in doc["skipped"]] == ["broken"]
    assert len(pd.read_parquet(sets / "out" / "audit.parquet")) == 2
    assert (sets / "out" / "report.html").stat().st_size > 1000


def test_audit_against_a_training_folder_with_options(sets, capsys):
    out = sets / "out2"
    assert cli.main(["audit", str(sets / "gen"), str(sets / "train"), "--out", str(out), "--threshold", "0.999",
                     "--no-report"]) == 0
    doc = json.loads((out / "audit.json").read_text())
    assert doc["summary"]["threshold"] == 0.999 and doc["config"]["reference_kind"] == "train"
    assert (out / "train_index" / "index.json").exists() and not (out / "report.html").exists()


def test_errors_are_one_clear_line(sets, tmp_path, capsys):
    assert cli.main(["audit", str(sets / "gen"), str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("diffmem audit: error:") and "missing" in err and "not found" in err

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).repeat(1, 4)

    torch.jit.script(Tiny()).save(str(tmp_path / "m.pt"))
    assert cli.main(["audit", str(sets / "gen"), str(sets / "INDEX"), "--out", str(tmp_path / "o"),
                     "--descriptor", f"sscd:{tmp_path / 'm.pt'}"]) == 1
    assert "policy mismatch" in capsys.readouterr().err
    assert cli.main(["index", "build", str(sets / "train"), "--out", str(tmp_path / "i2"), "--factory", "Bogus"]) == 1
    assert "invalid FAISS factory" in capsys.readouterr().err
    assert cli.main(["index"]) == 2
