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
            "traceback. Any listed name works with --head of 'rskp train' and 'rskp-bench'. --recipe NAME shows the "
            "RSKP settings that head trains with and where each value comes from; --check NAME runs the head "
            "contract checks (rskp_plugin.testing.check_head) on it."
        ),
    )
    p.add_argument("--recipe", default=None, metavar="NAME",
                   help="show head NAME's resolved RSKP recipe: every rskp key with its default, its value and its "
                        "source (the head's recipe or the default)")
    p.add_argument("--recipe-file", default=None, metavar="FILE",
                   help="with --recipe: show this recipe file (written by 'rskp calibrate') instead of the head's "
                        "registered one")
    p.add_argument("--all-keys", action="store_true", help="with --recipe: list every rskp key, not only those the "
                                                          "recipe sets")
    p.add_argument("--check", default=None, metavar="NAME",
                   help="run the head contract checks on head NAME and print each check's result")
    p.set_defaults(handler=_run_heads)


def _run_recipe(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..recipes import BUILTIN, provenance, resolve

    recipe = resolve(args.recipe, args.recipe_file or BUILTIN)
    rows = [r for r in provenance(recipe) if args.all_keys or r[3] != "default"]
    table = Table(title=f"RSKP recipe of {escape(args.recipe)}: {escape(recipe.source)}",
                  caption="run configs resolve: defaults < head recipe < YAML < flags < --set")
    table.add_column("rskp key", no_wrap=True)  # keys are copied into --set: never folded
    for column in ("value", "default", "from"):
        table.add_column(column, overflow="fold")
    for key, default, value, source in rows:
        table.add_row(escape(key), escape(repr(value)), escape(repr(default)), escape(source))
    if not rows:
        console.print(f"{escape(args.recipe)} has no recipe: it trains with RSKP's defaults "
                      "('rskp heads --recipe NAME --all-keys' lists them)", highlight=False)
    else:
        console.print(table)
    evidence = recipe.evidence
    if evidence.get("candidates"):
        chosen, rule = escape(str(evidence.get("chosen"))), escape(str(evidence.get("rule", "")))
        console.print(f"chosen by rskp calibrate: {chosen} ({rule})", highlight=False)
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from functools import partial

    from ..plugins import create_head
    from ..testing import HeadCheckError, check_head

    create_head(args.check)  # an unknown or broken head fails here with its own message
    factory = partial(create_head, args.check)
    try:
        passed = check_head(factory)
    except HeadCheckError as exc:
        err_console.print(f"[red]{args.check} fails the head contract[/]: {exc}", highlight=False)
        return 1
    console.print(f"{args.check} passes all {len(passed)} head contract checks: {', '.join(passed)}", highlight=False)
    return 0


def _run_heads(args: argparse.Namespace) -> int:
    if getattr(args, "recipe", None):
        return _run_recipe(args)
    if getattr(args, "check", None):
        return _run_check(args)
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
