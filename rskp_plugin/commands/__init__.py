"""The ``rskp`` subcommands, one module per group: ``heads``, ``train`` (train, plot), ``evaluate`` (predict,
evaluate), ``synthetic`` (make-synthetic); ``rskp_plugin.cli`` assembles the parser and holds the one error handler.

Each subcommand is a pair ``add_<name>(subparsers)`` / ``_run_<name>(args) -> int``, the latter set as the
subparser's ``handler`` default. Modules import only ``argparse`` and ``rich`` at the top, the rest inside the
handler, so that ``rskp --help`` starts fast.
"""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def markup(text: object) -> str:
    """``text`` shown literally inside rich markup (paths and messages may hold square brackets)."""
    from rich.markup import escape

    return escape(str(text))
