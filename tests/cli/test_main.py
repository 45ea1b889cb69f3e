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


def test_top_level_help_does_not_import_the_library():
    """`diffmem --help` builds only the subcommands' names (each one's full parser imports torch for its
    defaults); the one subcommand given is built in full."""
    import subprocess
    import sys

    code = ("import sys; from diffmem import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
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
