"""Subcommands whose issue has not landed yet: they show their help and say so, instead of pretending."""
from __future__ import annotations

import sys


def register_placeholder(sub, name: str, help: str, issue: str):
    p = sub.add_parser(name, help=f"{help} (not available yet)", description=f"{help}. Not available yet: {issue}.")

    def run(args) -> int:
        p.print_help()
        print(f"\ndiffmem {name}: not available yet ({issue})", file=sys.stderr)
        return 2

    p.set_defaults(func=run)
    return p
