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


@pytest.mark.slow
def test_a_corrupt_corpus_is_reported_file_by_file_through_the_cli(tmp_path, capsys):
    """Every bad file reported once with its own reason, the truncated one indexed and flagged, the good
    ones audited, no crash (reliability issue's acceptance)."""
    import json
    import os

    train = tmp_path / "train"
    train.mkdir()
    good = render_clip(ClipSpec.make("cat", "grass", "linear", "right", size=48, n_frames=16))
    write_video(train / "good.mp4", good, fps=8)
    full = write_video(train / "cut.webm", good, fps=8)
    (train / "half.webm").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    full.unlink()
    (train / "empty.mp4").write_bytes(b"")
    (train / "garbage.mp4").write_bytes(b"\x00\x01 not a video at all " * 40)
    (train / "folder.mp4").mkdir()
    os.symlink(train / "loopB.mp4", train / "loopA.mp4")
    os.symlink(train / "loopA.mp4", train / "loopB.mp4")
    write_video(train / "twin.mp4", good[::-1], fps=8)
    write_video(train / "twin.gif", good[:8], fps=8)
    assert cli.main(["index", "build", str(train), "--out", str(tmp_path / "I"), "--fps", "8"]) == 0
    out, err = capsys.readouterr()
    info = json.loads((tmp_path / "I" / "index.json").read_text())
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in info["skipped"]}
    assert len(info["skipped"]) == len(reasons) == 5  # one record per bad file
    assert "empty" in reasons["empty.mp4"] and "directory" in reasons["folder.mp4"]
    assert "loop" in reasons["loopA.mp4"] and "loop" in reasons["loopB.mp4"] and reasons["garbage.mp4"]
    assert "1 truncated" in out and "truncated half" in err
    from diffmem.index import VectorIndex

    ids = set(VectorIndex.open(tmp_path / "I").metadata["item_id"])
    assert ids == {"good", "half", "twin.mp4", "twin.gif"}
    assert cli.main(["audit", str(train), str(tmp_path / "I"), "--out", str(tmp_path / "A"), "--no-motion"]) == 0
    rows = json.loads((tmp_path / "A" / "audit.json").read_text())
    by_id = {r["id"]: r for r in rows["items"]}
    assert set(by_id) == ids and by_id["half"]["truncated"] and rows["summary"]["n_truncated"] == 1
    assert by_id["good"]["content_score"] > 0.99  # audited against itself
    assert "Traceback" not in capsys.readouterr().err


def test_a_manifest_whose_media_lie_elsewhere_needs_root_and_says_so(tmp_path, capsys):
    """The usual layout: the CSV in meta/, the videos in data/. Without --root the paths escape the
    manifest's folder: the build now fails naming why (it used to load 0 items and exit 0); --root works."""
    data, meta = tmp_path / "data", tmp_path / "meta"
    data.mkdir()
    meta.mkdir()
    for i, spec in enumerate((ClipSpec.make("cat", "grass", "linear", "right", size=48, n_frames=8),
                              ClipSpec.make("coin", "stars", "circle", "cw", size=48, n_frames=8))):
        write_video(data / f"clip{i}.mp4", render_clip(spec), fps=8)
    pd.DataFrame({"id": ["a", "b"], "path": ["clip0.mp4", "clip1.mp4"], "caption": ["a cat", "a coin"]}).to_csv(
        meta / "train.csv", index=False)
    assert cli.main(["index", "build", str(meta / "train.csv"), "--out", str(tmp_path / "I0")]) == 1
    assert "no media item to index" in capsys.readouterr().err
    assert cli.main(["index", "build", str(meta / "train.csv"), "--out", str(tmp_path / "I"),
                     "--root", str(data)]) == 0
    assert "2 items" in capsys.readouterr().out
    pd.DataFrame({"path": ["clip0.mp4"]}).to_csv(meta / "gen.csv", index=False)
    assert cli.main(["audit", str(meta / "gen.csv"), str(meta / "train.csv"), "--out", str(tmp_path / "A"),
                     "--root", str(data), "--no-motion"]) == 0
    assert "1 content-memorized" in capsys.readouterr().out
