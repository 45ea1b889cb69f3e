"""The `diffmem` command. One module per subcommand; each parses, calls one library function, prints.

A package rather than one cli.py so that each subcommand's arguments live beside nothing else.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import sys

from .. import __version__
from ..errors import DiffmemError

# Order = order in `diffmem --help`.
_SUBCOMMANDS = ("world", "index", "audit", "flow", "train", "generate", "detect", "amg", "prompts", "extract", "demo")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only`) the named subcommand's in full and the others as names with their
    one-line help: a subcommand's full parser imports the library for its defaults (torch, 2-4 s), which
    `diffmem --help` and every other subcommand should not wait for."""
    parser = argparse.ArgumentParser(
        prog="diffmem",
        description="Measure, detect and prevent training-data memorization in image and video diffusion models.",
    )
    parser.add_argument("--version", action="version", version=f"diffmem {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f".{name}", __name__)
        if only is None or name == only:
            module.register(sub)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def run() -> None:
    """The `diffmem` executable: `main` on the command line, then exit."""
    code = main()
    # The interpreter's last collection walks every object torch created at import: 0.4-0.5 s added to
    # every command's exit on the 2-core machine (`python -c "import torch"` 1.6 s, 1.1 s with this).
    # Frozen objects are left to the process's end; atexit handlers and file flushes still run.
    gc.freeze()
    sys.exit(code)


def _import_torch() -> None:
    """Import the library's base (torch) with the cyclic collector paused, then freeze what it made.

    Every command that runs imports torch, here rather than in the parser, so `diffmem --help` does not.
    Importing it makes about a million long-lived objects, and the collector walks the growing heap
    three times while it does (0.11-0.16 s of a 2.5 s `diffmem detect` on the 2-core machine); imports
    make no garbage cycles worth that, and frozen objects are skipped by every later collection.
    """
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        importlib.import_module("diffmem.device")
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(command if command in _SUBCOMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # A command group given without its action, or no command at all: show the help.
        (getattr(args, "_parser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        _import_torch()
        if getattr(args, "threads", None):
            from ..device import set_threads

            set_threads(args.threads)
        return int(args.func(args) or 0)
    except DiffmemError as e:
        print(f"diffmem {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"diffmem {args.command}: interrupted; finished items are kept, run again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a user sees one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"diffmem {args.command}: error: unexpected {type(e).__name__}: {e} (an input diffmem does not check "
              "yet, or a bug: run again with --debug before the command for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    run()
