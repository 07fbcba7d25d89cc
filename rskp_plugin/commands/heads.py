"""``rskp heads``: the installed heads, with the distribution that provides each."""

from __future__ import annotations

import argparse

from . import console, err_console


# ---------------------------------------------------------------------------------------------------- heads
def add_heads(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "heads",
        help="list the installed heads (name, distribution, version, summary)",
        description=(
            "List every head registered through the rskp_plugin entry-point group: the four built-in heads and "
            "any installed third-party head, with the distribution and version that provides it and its summary. "
            "A plugin that fails to import is listed in red with the reason; 'rskp --debug heads' prints its "
            "traceback. Any listed name works with --head of 'rskp train' and 'rskp-bench'."
        ),
    )
    p.set_defaults(handler=_run_heads)


def _run_heads(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..errors import DuplicateHeadError
    from ..plugins import head_errors, head_specs

    rows = []
    for spec in head_specs().values():
        dist, _, version = spec.distribution.partition(" ")  # "<distribution> <version>"; "" if registered by hand
        rows.append((escape(spec.name), escape(dist or "-"), escape(version or "-"), escape(spec.summary)))
    errors = head_errors()
    for name, err in errors.items():  # broken plugins and clashing names stay visible, with the reason
        cause = err.__cause__
        if isinstance(err, DuplicateHeadError):
            status, reason = "registered twice, unusable", str(err)
        else:
            status = "failed to load"
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
        dist, version = getattr(err, "distribution", "?"), getattr(err, "version", "?")
        rows.append((escape(name), escape(dist), escape(version),
                     f"[red]{status}[/] ({escape(reason)}); see `rskp --debug heads`"))
    table = Table(title="Installed heads")
    for column in ("name", "distribution", "version", "summary"):
        table.add_column(column, overflow="fold")
    for row in sorted(rows):
        table.add_row(*row)
    console.print(table)
    if getattr(args, "debug", False):  # the full import tracebacks of broken plugins
        import traceback

        for err in errors.values():
            err_console.print("".join(traceback.format_exception(err)), highlight=False, markup=False)
    return 0
