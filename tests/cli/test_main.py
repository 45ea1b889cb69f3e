"""The command line: every subcommand has help; errors are reported, not raised."""
import pytest

from diffmem import cli
from diffmem.cli import _SUBCOMMANDS


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in _SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", _SUBCOMMANDS)
def test_each_subcommand_prints_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    assert f"diffmem {name}" in capsys.readouterr().out


def test_no_command_prints_help_and_succeeds(capsys):
    assert cli.main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_top_level_help_does_not_import_the_library(fresh_python):
    """`diffmem --help` builds only the subcommands' names (each one's full parser imports torch for its
    defaults); the one subcommand given is built in full."""
    code = ("import sys; from diffmem import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = fresh_python(code)
    assert "TORCH False" in out and "generate" in out
    parser = cli.build_parser("audit")
    args = parser.parse_args(["audit", "g", "t", "--out", "o"])
    assert args.flow == "dis" and callable(args.func)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    from diffmem.cli import world

    def boom(args):
        raise ValueError("supplied range of [-inf, 1.0] is not finite")

    monkeypatch.setattr(world, "run_make", boom)
    assert cli.main(["world", "make", "W"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected ValueError: supplied range" in err and "--debug" in err
    with pytest.raises(ValueError, match="supplied range"):
        cli.main(["--debug", "world", "make", "W"])


def test_threads_sets_torch_faiss_and_opencv_and_every_computing_command_has_it(tmp_path, capsys):
    import cv2
    import faiss
    import torch

    try:
        assert cli.main(["flow", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "f.mp4"),
                         "--threads", "2"]) == 1  # set before the command runs (and fails on its input)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads(), cv2.getNumThreads()) == (2, 2, 2)
    finally:
        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
        cv2.setNumThreads(1)
    for name in ("index", "audit", "flow", "train", "generate", "detect", "amg", "prompts", "extract", "demo"):
        text = " ".join(a.option_strings[0] for p in _parsers(name) for a in p._actions if a.option_strings)
        assert "--threads" in text, name


def _parsers(name):
    import argparse

    top = cli.build_parser(name)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    acts = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
    return [sub] + [p for a in acts for p in a.choices.values()]


def test_every_sampling_command_takes_the_sample_size_and_passes_it_on(monkeypatch):
    """--frames/--height/--width existed on generate only (reliability/real-models issue)."""
    from diffmem.cli import detect as cli_detect

    for name in ("generate", "detect", "extract", "amg"):
        text = " ".join(o for p in _parsers(name) for a in p._actions for o in a.option_strings)
        assert all(f in text for f in ("--frames", "--height", "--width")), name
    args = cli.build_parser("detect").parse_args(["detect", "M", "--prompts", "P", "--out", "O", "--frames", "8",
                                                  "--height", "256", "--width", "320"])
    s = cli_detect._settings(args, None)
    assert (s.num_frames, s.height, s.width) == (8, 256, 320)
    seen = {}
    import diffmem.studies.extract as ex

    def fake(model, prompts, train, out, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(ex, "run_extract", fake)
    with pytest.raises(SystemExit):
        cli.main(["extract", "M", "--prompts", "P", "--train", "T", "--out", "O", "--frames", "8", "--width", "320"])
    assert (seen["num_frames"], seen["height"], seen["width"]) == (8, None, 320)


def test_a_command_imports_torch_with_the_collector_paused_and_freezes_it(fresh_python):
    """`diffmem detect` spent 0.11-0.16 s collecting while torch was imported; the command imports it with
    the collector off, re-enables it, and freezes the import's objects so later collections skip them.
    Counted, not timed: no collection of the oldest generation runs during the import."""
    code = ("import gc, sys; from diffmem.cli import _import_torch; assert 'torch' not in sys.modules; "
            "runs = []; gc.callbacks.append(lambda phase, info: phase == 'start' and runs.append(info['generation'])); "
            "_import_torch(); print('torch' in sys.modules, gc.isenabled(), gc.get_freeze_count() > 100000, runs.count(2))")
    assert fresh_python(code).split() == ["True", "True", "True", "0"]


def test_without_the_pause_importing_torch_runs_full_collections(fresh_python):
    """The control for the test above: the same count is not zero when torch is imported plainly, so the
    test above can fail."""
    code = ("import gc; runs = []; gc.callbacks.append(lambda phase, info: phase == 'start' and "
            "runs.append(info['generation'])); import torch; print(runs.count(2) > 0)")
    assert fresh_python(code).split() == ["True"]
