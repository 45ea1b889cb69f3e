"""Every numeric option of every command, given bad values: a one-line error naming the option, exit code 2,
no traceback, before any work (the reliability issue found NaN guidance writing black videos, --steps 0
saving an untrained checkpoint, --threshold nan flagging nothing, all with exit code 0)."""
import argparse

import pytest

from diffmem import cli
from diffmem.cli import _SUBCOMMANDS, build_parser, options

BAD = {  # validator -> values it must refuse (besides the ones every validator refuses)
    options.count: ["0", "-1", "1.5"],
    options.natural: ["-1", "2.5"],
    options.positive: ["0", "-1"],
    options.nonnegative: ["-0.5"],
    options.unit: ["-0.1", "1.5"],
    options.fraction: ["0", "1", "2"],
    options.similarity: ["-1.5", "1.5"],
}
ALWAYS_BAD = ["nan", "inf", "-inf", "abc", ""]
# the rest of a valid command line, so the only thing wrong is the option under test
BASE = {
    "world": ["world", "make", "W"], "index": ["index", "build", "T", "--out", "O"], "audit": ["audit", "G", "T", "--out", "O"],
    "flow": ["flow", "V", "--out", "F.mp4"], "train": ["train", "W", "--out", "O"],
    "generate": ["generate", "M", "--prompts", "P", "--out", "O"], "detect": ["detect", "M", "--prompts", "P", "--out", "O"],
    "amg": ["amg", "evaluate", "M", "--prompts", "P", "--index", "I", "--out", "O"],
    "prompts": ["prompts", "T", "--out", "O"], "extract": ["extract", "M", "--prompts", "P", "--train", "T", "--out", "O"],
    "demo": ["demo"],
}
BASE_BY_ACTION = {"diffmem world evaluate": ["world", "evaluate", "M", "--world", "W", "--out", "O"]}


def _numeric_actions(command):
    """(option string, validator, parser) of every option with a type, in the command and its actions."""
    found = []

    def walk(parser):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    walk(sub)
            elif a.type is not None and a.option_strings:
                found.append((a.option_strings[-1], a.type, parser))

    top = build_parser(command)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    walk(sub.choices[command])
    return found


CASES = [(c, opt, v) for c in _SUBCOMMANDS for opt, v, _ in _numeric_actions(c)]
# the parser (command and action) each case's option belongs to: options of one name may be in two actions
PROGS = [p.prog for c in _SUBCOMMANDS for _, _, p in _numeric_actions(c)]


def test_every_numeric_option_has_a_checked_type():
    raw = [(c, opt) for c, opt, v in CASES if v in (int, float)]
    assert not raw, f"options typed plain int/float (unchecked: NaN, negatives pass): {raw}"
    assert len(CASES) >= 60  # the walk found the options


@pytest.mark.parametrize("command, option, validator, prog", [(*c, p) for c, p in zip(CASES, PROGS)],
                         ids=[f"{p.removeprefix('diffmem ')} {o}" for (_, o, _), p in zip(CASES, PROGS)])
def test_bad_values_are_refused_naming_the_option(command, option, validator, prog, capsys):
    for value in ALWAYS_BAD + BAD.get(validator, []):
        argv = BASE_BY_ACTION.get(prog, BASE[command]) + [option, value]
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2, (argv, err)
        assert f"argument {option}" in err and "Traceback" not in err, (argv, err)
        assert err.strip().splitlines()[-1].startswith(f"diffmem {command}"), err


PATH_CASES = [  # (argv, the path the error must name): missing inputs, files given for output folders
    (["world", "make", "{f}"], "{f}"),
    (["index", "build", "{m}", "--out", "{d}/I"], "{m}"),
    (["index", "build", "{d}", "--out", "{f}"], "{f}"),
    (["index", "info", "{m}"], "{m}"),
    (["audit", "{d}/nogen", "{d}/notrain", "--out", "{d}/A"], "{d}/nogen"),  # checked before the index
    (["audit", "{d}", "{d}", "--out", "{f}"], "{f}"),
    (["flow", "{m}.mp4", "--out", "{d}/f.mp4"], "{m}.mp4"),
    (["train", "{m}", "--out", "{d}/T"], "{m}"),
    (["generate", "builtin:tiny-t2v", "--prompts", "{m}.txt", "--out", "{d}/G"], "{m}.txt"),
    (["generate", "builtin:tiny-t2v", "--prompts", "{f}", "--out", "{d}/G"], "{f}"),
    (["generate", "{m}", "--prompts", "{d}/p.txt", "--out", "{d}/G"], "{m}"),
    (["detect", "builtin:tiny-t2v", "--prompts", "{m}.txt", "--out", "{d}/D"], "{m}.txt"),
    (["amg", "evaluate", "builtin:tiny-t2v", "--prompts", "{m}.txt", "--index", "{m}", "--out", "{d}/E"], "{m}.txt"),
    (["prompts", "{m}", "--out", "{d}/p.jsonl"], "{m}"),
    (["extract", "builtin:tiny-t2v", "--prompts", "{m}.txt", "--train", "{m}", "--out", "{d}/X"], "{m}.txt"),
    (["demo", "--out", "{f}", "--size", "tiny", "--quiet"], "{f}"),
]


@pytest.mark.parametrize("argv, named", PATH_CASES, ids=[" ".join(a[:2]) for a, _ in PATH_CASES])
def test_missing_inputs_and_files_for_folders_are_one_line_errors(argv, named, tmp_path, capsys):
    fill = {"m": str(tmp_path / "missing"), "f": str(tmp_path / "notes.pdf"), "d": str(tmp_path)}
    (tmp_path / "notes.pdf").write_text("%PDF-1.4\n")
    (tmp_path / "p.txt").write_text("a cat moves right across grass\n")
    code = cli.main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and named.format(**fill) in err, err
    assert len(err.strip().splitlines()) == 1, err


MODEL_COMMANDS = ["generate", "detect", "extract", "amg"]  # every command that loads a model to sample


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_dtype_choices_are_checked(command, capsys):
    """--dtype takes float32, bfloat16 or float16 only (a choice, not a typed option: not in CASES above)."""
    with pytest.raises(SystemExit) as e:
        cli.main(BASE[command] + ["--dtype", "int8"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --dtype" in err and "int8" in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"diffmem {command}"), err
    top = build_parser(command)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    if command == "amg":
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices["evaluate"]
    dests = {a.dest: a for a in sub._actions}
    assert dests["dtype"].choices == options.DTYPES and dests["dtype"].default == "float32"
    assert "model_config" in dests  # --config (single-file checkpoints) comes with it
