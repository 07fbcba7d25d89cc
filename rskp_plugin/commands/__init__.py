"""The ``rskp`` subcommands, one module per group: ``heads``, ``train`` (train, plot), ``evaluate`` (predict,
evaluate), ``synthetic`` (make-synthetic); ``rskp_plugin.cli`` assembles the parser and holds the one error handler.

Each subcommand is a pair ``add_<name>(subparsers)`` / ``_run_<name>(args) -> int``, the latter set as the
subparser's ``handler`` default. Modules import only ``argparse`` and ``rich`` at the top, the rest inside the
handler: building the parser never imports torch, so ``rskp --help`` took 0.45 s instead of 2.4 s with torch
imported (``time rskp --help`` on the 2-core development machine; tests/test_import_graph.py keeps torch out).
"""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def markup(text: object) -> str:
    """``text`` shown literally inside rich markup (paths and messages may hold square brackets)."""
    from rich.markup import escape

    return escape(str(text))


def config_notes(load):  # noqa: ANN001, ANN201 - a callable and what it returns
    """``load()``'s result, with its ``PackagedOptionNote`` warnings printed once each as plain "note:" lines
    (a packaged config's head option the head does not take); other warnings are shown as usual."""
    import warnings

    from ..engine.config import PackagedOptionNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PackagedOptionNote)
        result = load()
    seen = set()
    for w in caught:
        if issubclass(w.category, PackagedOptionNote):
            if str(w.message) not in seen:
                seen.add(str(w.message))
                err_console.print(f"note: {markup(w.message)}", highlight=False, soft_wrap=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return result
