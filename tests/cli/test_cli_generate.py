"""`diffmem generate`: files, manifest, settings, resume after a kill, refusal to mix settings."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from diffmem import cli
from diffmem.cli.amg import amg_config_from_args as evaluate_amg_config
from diffmem.cli.generate import amg_config_from_args as generate_amg_config
from diffmem.data.manifest import load_manifest
from diffmem.guidance.config import AMGConfig
from diffmem.io.video import read_frames
from diffmem.models.tiny import TinyConfig, TinyModel, build_vocab, save_tiny

README = Path(__file__).resolve().parents[2] / "README.md"

PROMPTS = [{"prompt": "a cat moves right across grass", "group": "novel"},
           {"prompt": "a picture of a face on stars", "group": "duplicated_image", "id": "face"}]


def _model(folder, kind="video"):
    torch.manual_seed(0)
    cfg = TinyConfig(kind=kind, size=16, frames=4 if kind == "video" else 1, channels=(8, 16), blocks=1, text_dim=16,
                     latent_channels=8, vocab=build_vocab([p["prompt"] for p in PROMPTS]))
    m = TinyModel(cfg)
    for p in m.denoiser.parameters():  # random, non-zero outputs so samples differ by seed
        torch.nn.init.normal_(p, std=0.05)
    save_tiny(m, folder)
    return folder


@pytest.fixture
def setup(tmp_path):
    model = _model(tmp_path / "model")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return model, prompts, tmp_path / "out"


def _run(model, prompts, out, *extra):
    return cli.main(["generate", str(model), "--prompts", str(prompts), "--n", "2", "--seed", "5", "--steps", "2",
                     "--out", str(out), *extra])


def test_generate_writes_samples_manifest_and_settings(setup, capsys):
    model, prompts, out = setup
    assert _run(model, prompts, out) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_samples"] == 4 and summary["n_generated"] == 4
    df = pd.read_parquet(out / "manifest.parquet")
    assert list(df["id"]) == ["p00000_s0", "p00000_s1", "face_s0", "face_s1"]
    assert list(df["seed"]) == [5, 6, 5, 6]
    assert list(df["group"]) == ["novel", "novel", "duplicated_image", "duplicated_image"]
    assert (df["caption"] == df["prompt"]).all()
    m = load_manifest(out / "manifest.parquet")
    assert len(m.items) == 4 and not m.skipped and all(i.kind == "video" for i in m.items)
    clip = read_frames(m.items[0].path).array
    assert clip.shape == (4, 16, 16, 3)
    gen = json.loads((out / "generation.json").read_text())
    assert gen["settings"]["steps"] == 2 and gen["settings"]["n"] == 2 and gen["status"] == "done"
    assert gen["model"]["kind"] == "video" and gen["environment"]["packages"]["torch"]
    # different seeds give different samples
    other = read_frames(m.items[1].path).array
    assert np.abs(clip.astype(int) - other.astype(int)).mean() > 1


def test_resume_redoes_only_missing_samples(setup, capsys):
    model, prompts, out = setup
    assert _run(model, prompts, out) == 0
    capsys.readouterr()
    victim = out / "samples" / "face_s1.mp4"
    before = read_frames(victim).array
    keep = out / "samples" / "p00000_s0.mp4"
    mtime = keep.stat().st_mtime_ns
    # a kill between the media file and its record: the record is missing, so the sample is redone
    os.unlink(out / "samples" / "face_s1.json")
    assert _run(model, prompts, out) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_generated"] == 1 and summary["n_already_done"] == 3
    assert keep.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(read_frames(victim).array, before)  # explicit seeds: the same sample again
    assert len(pd.read_parquet(out / "manifest.parquet")) == 4


def test_other_settings_in_the_same_folder_are_refused(setup, capsys):
    model, prompts, out = setup
    assert _run(model, prompts, out) == 0
    assert _run(model, prompts, out, "--guidance", "2.0") == 1
    assert "other settings" in capsys.readouterr().err


def test_text_prompts_and_image_model(tmp_path):
    model = _model(tmp_path / "img", kind="image")
    txt = tmp_path / "p.txt"
    txt.write_text("a picture of a face on stars\n\na cat\n")
    assert cli.main(["generate", str(model), "--prompts", str(txt), "--n", "1", "--steps", "1", "--out",
                     str(tmp_path / "o")]) == 0
    df = pd.read_parquet(tmp_path / "o" / "manifest.parquet")
    assert list(df["path"]) == ["samples/p00000_s0.png", "samples/p00001_s0.png"]
    assert read_frames(tmp_path / "o" / df["path"][0]).array.shape == (1, 16, 16, 3)


def test_bad_inputs_are_reported(tmp_path, capsys):
    assert cli.main(["generate", "builtin:nope", "--prompts", str(tmp_path / "x.txt"), "--out", str(tmp_path / "o")]) == 1
    assert "unknown built-in" in capsys.readouterr().err
    model = _model(tmp_path / "m")
    assert cli.main(["generate", str(model), "--prompts", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 1
    assert "missing.txt" in capsys.readouterr().err


def test_amg_flags_default_to_the_one_configuration():
    parser = cli.build_parser()
    gen = parser.parse_args(["generate", "m", "--prompts", "p", "--out", "o", "--amg", "--index", "i"])
    assert generate_amg_config(gen) == AMGConfig()
    ev = parser.parse_args(["amg", "evaluate", "m", "--prompts", "p", "--index", "i", "--out", "o"])
    assert evaluate_amg_config(ev) == AMGConfig()
    ev = parser.parse_args(["amg", "evaluate", "m", "--prompts", "p", "--index", "i", "--out", "o", "--c3", "50",
                            "--content-lo", "0.9", "--no-motion", "--schedule", "parabolic"])
    assert evaluate_amg_config(ev) == AMGConfig(c3=50.0, content_lo=0.9, motion=False, schedule="parabolic")
    gen = parser.parse_args(["generate", "m", "--prompts", "p", "--out", "o", "--amg-check-every", "1"])
    assert generate_amg_config(gen) == AMGConfig(check_every=1)


def _readme_amg_example() -> str:
    text = README.read_text(encoding="utf-8")
    lib = text[text.index("## Anti-Memorization Guidance"):]
    lib = lib[lib.index("### Library"):]
    start = lib.index("```python\n") + len("```python\n")
    return lib[start:lib.index("```", start)]


@pytest.mark.slow
def test_readme_amg_example_gives_the_cli_samples(tmp_path, monkeypatch):
    """The README's Python AMG example, run as written, and `diffmem generate --amg` give the same samples."""
    monkeypatch.chdir(tmp_path)  # the README's relative paths: world/, runs/
    world = tmp_path / "world"
    world.mkdir()
    (world / "prompts.jsonl").write_text(json.dumps(PROMPTS[0]) + "\n")  # one prompt x 2 seeds: quick
    # a training set the committed tiny model copies for sure: its own plain samples of these prompts
    assert cli.main(["generate", "builtin:tiny-t2v", "--prompts", "world/prompts.jsonl", "--out", "world",
                     "--n", "2"]) == 0
    shutil.copy(world / "manifest.parquet", world / "train.parquet")
    assert cli.main(["generate", "builtin:tiny-t2v", "--prompts", "world/prompts.jsonl", "--out", "runs/gen-amg",
                     "--n", "2", "--amg", "--index", "world"]) == 0
    exec(compile(_readme_amg_example(), str(README), "exec"), {})
    cli_out, py_out = tmp_path / "runs" / "gen-amg", tmp_path / "runs" / "gen-amg-py"
    a, b = pd.read_parquet(cli_out / "manifest.parquet"), pd.read_parquet(py_out / "manifest.parquet")
    assert list(a["id"]) == list(b["id"]) and list(a["seed"]) == list(b["seed"]) and len(a) == 2
    triggered = 0
    for sid, path in zip(a["id"], a["path"]):
        x, y = read_frames(cli_out / path).array, read_frames(py_out / path).array
        np.testing.assert_array_equal(x, y)
        tx = json.loads((cli_out / "samples" / f"{sid}.amg.json").read_text())
        ty = json.loads((py_out / "samples" / f"{sid}.amg.json").read_text())
        assert tx == ty  # the same sigma, lambda and terms at every step, the same configuration
        if tx["summary"]["amg_triggered_steps"]:
            triggered += 1
            assert not np.array_equal(x, read_frames(world / path).array)  # AMG changed the plain sample
    assert triggered >= 1  # AMG acted, so the equality above is not plain sampling twice


def test_a_folder_with_no_finished_sample_can_be_reused_with_other_settings(setup, capsys):
    """A run that failed before its first sample (the issue's AnimateDiff frame count) left a
    generation.json, and the folder was then refused ("other settings") although it held nothing."""
    model, prompts, out = setup
    assert _run(model, prompts, out) == 0
    for f in (out / "samples").iterdir():  # as if the first run had finished no sample
        f.unlink()
    assert _run(model, prompts, out, "--guidance", "2.0") == 0
    assert json.loads((out / "generation.json").read_text())["settings"]["guidance"] == 2.0
    assert _run(model, prompts, out, "--guidance", "3.0") == 1  # now it holds samples: refused
    assert "other settings" in capsys.readouterr().err


def test_generate_amg_takes_every_knob_and_the_preset():
    from diffmem.cli import build_parser
    from diffmem.cli.options import amg_config_from_args

    args = build_parser().parse_args(
        ["generate", "builtin:tiny-t2v", "--prompts", "p.txt", "--out", "o", "--amg", "--index", "w",
         "--amg-c1", "5", "--amg-c2", "6", "--amg-c3", "50", "--amg-schedule", "parabolic", "--amg-content-lo", "0.9",
         "--amg-content-hi", "0.95", "--amg-motion-lo", "0.7", "--amg-motion-hi", "0.8", "--amg-no-motion",
         "--amg-caption-mode", "neighbour", "--amg-check-every", "3", "--amg-preset", "amg-sd-2024"])
    cfg = amg_config_from_args(args)
    assert (cfg.c1, cfg.c2, cfg.c3, cfg.schedule, cfg.content_lo, cfg.content_hi) == (5, 6, 50, "parabolic", 0.9, 0.95)
    assert (cfg.motion_lo, cfg.motion_hi, cfg.motion, cfg.caption_mode, cfg.check_every) == (0.7, 0.8, False, "neighbour", 3)
    assert args.amg_preset == "amg-sd-2024"
    ev = build_parser().parse_args(["amg", "evaluate", "m", "--prompts", "p", "--index", "i", "--out", "o", "--c3", "7",
                                    "--ablations", "baseline", "amg-sd-2024", "wen-2024"])
    assert amg_config_from_args(ev).c3 == 7 and ev.ablations == ["baseline", "amg-sd-2024", "wen-2024"]
