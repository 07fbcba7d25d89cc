"""Command-line interface: ``rskp`` (train, predict, evaluate, bench, heads, make-synthetic, plot) and ``rskp-bench``
(an alias of ``rskp bench``).

The subcommands live in ``rskp_plugin.commands`` (one module per group), each a pair ``add_<name>(subparsers)`` /
``_run_<name>(args) -> int``, the latter set as the subparser's ``handler`` default. ``run_parsed`` is the one error
handler: errors print one line and a hint; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Callable, Sequence

from .commands import console, err_console, markup
from .commands.calibrate import add_calibrate
from .commands.evaluate import add_evaluate, add_predict
from .commands.heads import add_heads
from .commands.synthetic import add_make_synthetic
from .commands.train import add_plot, add_train
from .errors import RSKPError

__all__ = ["bench_main", "build_parser", "console", "err_console", "main", "run_parsed"]


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
    line and returns 2, an interrupt returns 130; ``--debug`` shows the traceback instead.

    It is also the one path-and-IO error layer: an ``OSError`` that no command turned into an ``RSKPError`` (a name
    too long, permission denied, a full disk, a symbolic-link loop, a device where a file belongs, standard output
    closed or full) and running out of memory print one line naming the path and what to do, and return 2."""
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a full or closed standard output shows here, not as a traceback at exit
        return code
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
    except (OSError, MemoryError, RuntimeError) as exc:
        message = io_error_message(exc)
        if debug or message is None:
            raise
        if isinstance(exc, OSError) and exc.filename is None and exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EIO):
            _silence_stdout()  # what is still buffered for standard output can never be written
        err_console.print(f"[bold red]error:[/] {markup(message)}", highlight=False, soft_wrap=True)
        return 2


#: What an ``OSError``'s errno means for the user, and what to do.
_IO_REASONS = {
    errno.ENAMETOOLONG: ("the name is too long (at most 255 bytes a folder or file name, 4096 in all)",
                         "pass a shorter path"),
    errno.EACCES: ("permission denied", "check its permissions (ls -l, chmod) or pass another path"),
    errno.EPERM: ("permission denied", "check its permissions (ls -l, chmod) or pass another path"),
    errno.EROFS: ("the file system is read-only", "pass a path on a writable file system"),
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space or write elsewhere"),
    errno.ELOOP: ("a symbolic-link loop", "fix the link (ls -l shows where it points)"),
    errno.ENOENT: ("it does not exist", "check the path"),
    errno.ENOTDIR: ("a part of the path is not a folder", "check the path"),
    errno.EISDIR: ("it is a folder", "pass a file"),
    errno.ENXIO: ("it is not a regular file (a device or socket)", "pass a regular file"),
    errno.EPIPE: ("the reader closed the pipe", "keep the reading command open until rskp ends"),
    errno.EIO: ("an input/output error of the device", "check the disk or pass another path"),
}


def io_error_message(exc: BaseException) -> str | None:
    """One line for an ``OSError``, a ``MemoryError`` or a symbolic-link loop, naming the path and what to do;
    None for anything else (a bug: shown with its traceback)."""
    if isinstance(exc, MemoryError):
        return ("out of memory; ask for less (a lower --dpi, fewer or shorter videos, a smaller --batch-size) or "
                "free memory")
    if isinstance(exc, RuntimeError):  # pathlib on Python < 3.13 reports a symbolic-link loop so
        text = str(exc)
        if text.startswith("Symlink loop from "):
            where = text[len("Symlink loop from "):]
            return f"cannot follow {_shown_path(where.strip(chr(39)))}: a symbolic-link loop; fix the link"
        return None
    if not isinstance(exc, OSError):
        return None
    reason, hint = _IO_REASONS.get(exc.errno, (exc.strerror or str(exc), "check the path"))
    if exc.filename is None:
        if exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EIO):
            return f"cannot write to standard output: {reason}"
        return f"{reason}; {hint}"
    where = _shown_path(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {_shown_path(exc.filename2)}"
    return f"cannot use {where}: {reason}; {hint}"


def _shown_path(path: object, limit: int = 160) -> str:
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return repr(text if len(text) <= limit else text[: limit // 2] + " ... " + text[-limit // 2:])


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
