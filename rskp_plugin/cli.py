"""Command-line interface: ``rskp`` (train, predict, evaluate, heads, make-synthetic) and ``rskp-bench``.

Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args) -> int``. Errors print one line and a
hint; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from rich.console import Console

from .errors import RSKPError

console = Console()
err_console = Console(stderr=True)


# ---------------------------------------------------------------------------------------------------- heads
def _add_heads(sub: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:
    sub.add_parser("heads", help="list the installed heads (name, distribution, version, summary)")
    return _run_heads


def _run_heads(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .plugins import head_specs

    table = Table(title="Installed heads")
    for column in ("name", "distribution", "summary"):
        table.add_column(column)
    for spec in sorted(head_specs().values(), key=lambda s: s.name):
        table.add_row(spec.name, spec.distribution, spec.summary)
    console.print(table)
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], Callable[[argparse.Namespace], int]]] = [_add_heads]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(
        prog="rskp", description="RSKP for any weakly supervised temporal action localization head."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers = {}
    for add in _COMMANDS:
        before = set(sub.choices)
        run = add(sub)
        for name in set(sub.choices) - before:
            handlers[name] = run
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except RSKPError as exc:
        if args.debug:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``rskp-bench``: Table 6 rows (head alone vs head + RSKP)."""
    from .bench import main as run_bench

    return run_bench(argv)


if __name__ == "__main__":
    sys.exit(main())
