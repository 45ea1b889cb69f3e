"""`diffmem world make` and `diffmem demo` through diffmem.cli.main."""
import json

import pandas as pd
import pytest

from diffmem import cli


def test_world_make_writes_a_world_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "w"
    assert cli.main(["world", "make", str(out), "--size", "tiny", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    for word in ("items", "videos", "images", "duplicates", "captions", "prompts", "time"):
        assert word in printed
    df = pd.read_parquet(out / "train.parquet")
    assert f"items       {len(df)} " in printed
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["seed"] == 2 and gt["size"] == "tiny"
    assert (out / "prompts.jsonl").read_text().strip()
    # again: same world, nothing to do, still fine
    before = (out / "ground_truth.json").read_bytes()
    assert cli.main(["world", "make", str(out), "--size", "tiny", "--seed", "2"]) == 0
    assert (out / "ground_truth.json").read_bytes() == before


def test_world_make_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    (out / "precious.txt").write_text("x")
    assert cli.main(["world", "make", str(out), "--size", "tiny"]) == 1
    err = capsys.readouterr().err
    assert "diffmem world: error:" in err and str(out) in err and "--force" in err
    assert not (out / "train.parquet").exists()
    assert cli.main(["world", "make", str(out), "--size", "tiny", "--force"]) == 0
    assert (out / "precious.txt").exists() and (out / "train.parquet").exists()


def test_world_without_action_shows_help(capsys):
    assert cli.main(["world"]) == 2
    assert "make" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_builds_the_world_under_out(tmp_path, capsys):
    """The CLI demo end to end with the committed model, at the smallest settings (every stage but AMG,
    which tests/studies/test_amg.py runs; the full-size run is `make demo`)."""
    out = tmp_path / "d"
    assert cli.main(["demo", "--out", str(out), "--size", "tiny", "--seed", "1", "--n", "1", "--steps", "3",
                     "--top", "3", "--novel", "1", "--no-amg", "--quiet"]) == 0
    assert (out / "world" / "train.parquet").exists() and (out / "report.html").exists()
    printed = capsys.readouterr().out
    assert "world" in printed and "extract" in printed and "SKIPPED: turned off (--no-amg)" in printed


def test_the_demo_world_is_the_one_the_model_was_trained_on():
    from types import SimpleNamespace

    from diffmem.studies.demo import DEFAULT_MODEL, world_size_for

    assert DEFAULT_MODEL == "builtin:tiny-t2v-large" and world_size_for(DEFAULT_MODEL) == "large"
    assert world_size_for("builtin:tiny-t2v") == "small"
    assert world_size_for(SimpleNamespace(name="my-model")) == "large"
