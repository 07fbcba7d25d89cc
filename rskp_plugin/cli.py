"""Command-line interface: ``rskp`` (train, predict, evaluate, bench, heads, make-synthetic, plot) and ``rskp-bench``
(an alias of ``rskp bench``).

The subcommands live in ``rskp_plugin.commands`` (one module per group), each a pair ``add_<name>(subparsers)`` /
``_run_<name>(args) -> int``, the latter set as the subparser's ``handler`` default. ``run_parsed`` is the one error
handler: errors print one line and a hint; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .commands import console, err_console, markup
from .commands.calibrate import add_calibrate
from .commands.evaluate import add_evaluate, add_predict
from .commands.heads import add_heads
from .commands.synthetic import add_make_synthetic
from .commands.train import add_plot, add_train, train_values
from .errors import RSKPError

__all__ = ["bench_main", "build_parser", "console", "err_console", "main", "run_parsed"]

_train_values = train_values  # the name tests and scripts used before the subcommands moved to rskp_plugin.commands


# ---------------------------------------------------------------------------------------------------- bench
def _add_bench(sub: argparse._SubParsersAction) -> None:
    from . import bench

    p = sub.add_parser("bench", help="the paper's Table 6 for one head or all: head alone vs head + RSKP",
                       description=bench.DESCRIPTION)
    bench.add_arguments(p)  # the options of the rskp-bench alias, and its handler


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_heads, add_train, add_predict, add_evaluate, _add_bench, add_calibrate, add_make_synthetic, add_plot,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``rskp`` parser; each subcommand's ``handler`` (``set_defaults``) runs it."""
    parser = argparse.ArgumentParser(
        prog="rskp", description="RSKP for any weakly supervised temporal action localization head."
    )
    from .bench import VersionAction

    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``rskp``; returns the exit status."""
    return run_parsed(build_parser(), argv)


def bench_main(argv: Sequence[str] | None = None) -> int:
    """``rskp-bench``: an alias of ``rskp bench`` (the same options and output) kept for existing scripts."""
    from .bench import build_parser as bench_parser

    return run_parsed(bench_parser(), argv)


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its ``handler``: the one error handler of every command. An ``RSKPError`` prints one
    line and returns 2, an interrupt returns 130; ``--debug`` shows the traceback instead."""
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.handler(args)
    except RSKPError as exc:
        if debug:
            raise
        # escaped: a message may hold square brackets ("[start, end]", "wum[rskp-head-wum]") that are not markup
        err_console.print(f"[bold red]error:[/] {markup(exc)}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[yellow]interrupted[/]", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
