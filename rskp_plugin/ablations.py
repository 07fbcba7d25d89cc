"""The paper's ablations as data: for each table, its rows in the paper's order, each a pure config change.

``rskp bench --ablation TABLE`` (``rskp_plugin.bench``) trains every row of a table on the recipe of Table 6 (same
seeds, data and schedule) and prints the paper's numbers beside ours when the data is THUMOS14. A row is:

* ``name``: the variant name shown in the table and written as ``variant`` in the results;
* ``rskp``: whether the head is wrapped by RSKP (False: the head alone, ``HeadOnlyModel``);
* ``overrides``: ``--set``-style ``key=value`` strings applied to the recipe (the switches of issue 11, named in
  ``rskp_plugin.config``);
* ``paper``: the paper's mAP (%) on THUMOS14 at IoU 0.3 / 0.5 / 0.7 and AVG(0.1:0.7), or None where the paper gives
  no number in its text (Fig. 5 shows its values only in a plot);
* ``requires``: an importable module the row needs (``sklearn`` for agglomerative and spectral clustering, the
  optional extra ``clustering``), or "".

Unless a row says otherwise the paper's ablations run without the memory bank (section 4.4: "Unless explicitly stated,
we do not utilize the memory bank"), so those rows carry ``rskp.memory.enabled=false``. Rows whose configs come out
equal (Table 3 "+ pseudo label supervision" = Table 4 "EM-Att" = Table 5 "Equation (6)") are trained once per seed.
Sources: main paper Tables 3-5 and Fig. 5, supplement Tables 2-3.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Iterable

import attrs

from .errors import ConfigError

MEMORY_OFF = "rskp.memory.enabled=false"
NO_DISTILLATION = ("rskp.losses.distillation=0", "rskp.losses.distillation_after_warmup=0")


@attrs.frozen
class AblationRow:
    """One row of an ablation table (see the module docstring)."""

    name: str
    rskp: bool
    overrides: tuple[str, ...] = ()
    paper: dict[str, float] | None = None
    requires: str = ""


def _paper(map3: float, map5: float, map7: float, avg: float) -> dict[str, float]:
    """The paper's mAP (%) at IoU 0.3 / 0.5 / 0.7 and AVG(0.1:0.7), keyed as ``PAPER_TABLE6``."""
    return {"0.3": map3, "0.5": map5, "0.7": map7, "AVG": avg}


def _off(*overrides: str) -> tuple[str, ...]:
    return (MEMORY_OFF, *overrides)


#: table -> rows in the paper's order. Paper numbers: THUMOS14, mAP (%) at 0.3 / 0.5 / 0.7 / AVG(0.1:0.7).
ABLATIONS: dict[str, tuple[AblationRow, ...]] = {
    # Table 3: the necessity of representative snippets, their supervision and the memory bank.
    "table3": (
        AblationRow("baseline", False, (), _paper(45.2, 29.9, 10.2, 36.8)),
        AblationRow("+representative snippets", True, _off(*NO_DISTILLATION), _paper(48.7, 33.1, 11.5, 40.1)),
        AblationRow("+pseudo-label supervision", True, _off(), _paper(54.5, 37.3, 12.5, 44.2)),
        AblationRow("+memory bank", True, (), _paper(55.8, 38.2, 12.5, 45.1)),
        AblationRow("replace mu^a with F", True, _off("rskp.summarizer.method=features"),
                    _paper(52.4, 35.5, 11.7, 42.4)),
    ),
    # Table 4: how representative snippets are generated (without the memory bank).
    "table4": (
        AblationRow("discriminative snippets", True, _off("rskp.summarizer.method=discriminative"),
                    _paper(45.0, 25.0, 6.8, 34.8)),
        AblationRow("k-means", True, _off("rskp.summarizer.method=kmeans"), _paper(51.7, 34.1, 11.7, 41.5)),
        AblationRow("agglomerative clustering", True, _off("rskp.summarizer.method=agglomerative"),
                    _paper(50.0, 32.3, 11.2, 40.1), requires="sklearn"),
        AblationRow("spectral clustering", True, _off("rskp.summarizer.method=spectral"),
                    _paper(50.5, 31.6, 11.1, 40.4), requires="sklearn"),
        AblationRow("EM-Att w/o BP", True, _off("rskp.summarizer.method=em_nograd"), _paper(53.1, 35.2, 12.1, 42.8)),
        AblationRow("EM-Att", True, _off(), _paper(54.5, 37.3, 12.5, 44.2)),
    ),
    # Table 5: how the representatives' knowledge is propagated (without the memory bank).
    "table5": (
        AblationRow("random walk Z^a mu^a", True, _off("rskp.propagation.method=random_walk"),
                    _paper(45.0, 25.0, 6.8, 34.8)),
        AblationRow("eq. 6 (BiRW)", True, _off(), _paper(54.5, 37.3, 12.5, 44.2)),
        AblationRow("propagate scores", True, _off("rskp.propagation.method=scores"), _paper(49.5, 28.8, 8.2, 38.5)),
        AblationRow("propagated features w/o L_cls", True,
                    _off("rskp.losses.intra_classification=0", "rskp.losses.inter_classification=0"),
                    _paper(48.2, 28.4, 8.3, 37.7)),
    ),
    # Fig. 5: eq. 4-5 unrolled for a number of steps beside the closed form; its values are only plotted.
    "fig5": (
        *(AblationRow(f"unrolled {k} step{'s' if k > 1 else ''}", True,
                      _off("rskp.propagation.method=unrolled", f"rskp.propagation.steps={k}"))
          for k in (1, 2, 3, 5, 10)),
        AblationRow("closed form (eq. 6)", True, _off()),
    ),
    # Supplement Tables 2-3: foreground/background representatives, top/bottom-scoring ones, feature losses
    # instead of the pseudo-label supervision, and early fusion of intra- and inter-video representatives.
    "supp": (
        AblationRow("foreground representatives", True, _off("rskp.summarizer.region=foreground"),
                    _paper(52.2, 33.2, 11.7, 41.8)),
        AblationRow("background representatives", True, _off("rskp.summarizer.region=background"),
                    _paper(51.5, 30.9, 8.9, 40.2)),
        AblationRow("representatives of high scores", True, _off("rskp.summarizer.method=extremes"),
                    _paper(49.2, 30.2, 8.5, 39.2)),
        AblationRow("feature L1 loss", True,
                    _off("rskp.losses.feature_loss=l1", "rskp.losses.distillation=0",
                         "rskp.losses.intra_classification=0"), _paper(52.1, 32.1, 10.1, 41.1)),
        AblationRow("feature L2 loss", True,
                    _off("rskp.losses.feature_loss=l2", "rskp.losses.distillation=0",
                         "rskp.losses.intra_classification=0"), _paper(52.7, 31.6, 10.2, 41.2)),
        AblationRow("concat mu^a and mu^e", True, ("rskp.propagation.inter_fusion=early",),
                    _paper(54.4, 35.2, 10.6, 43.0)),
    ),
}
ABLATION_NAMES: tuple[str, ...] = tuple(ABLATIONS)
#: What the paper says of a table when its numbers are not in the text.
PAPER_NOTES = {"fig5": "the paper's Fig. 5 values are not given in the text (only plotted)"}
#: The optional extra that installs a row's ``requires`` module.
EXTRAS = {"sklearn": 'pip install "rskp-plugin[clustering]"'}


def selected_tables(name: str) -> list[str]:
    """The tables of ``--ablation NAME``: one table, or every table for "all".

    Raises:
        ConfigError: an unknown name (the valid ones listed).
    """
    if name == "all":
        return list(ABLATIONS)
    if name not in ABLATIONS:
        raise ConfigError(f'unknown ablation "{name}"; choose one of {", ".join(ABLATION_NAMES)} or all')
    return [name]


def missing_requirement(row: AblationRow) -> str | None:
    """Why ``row`` cannot run here (its optional module is not installed, and how to install it), or None."""
    if not row.requires or importlib.util.find_spec(row.requires) is not None:
        return None
    return f"needs {row.requires}, which is not installed ({EXTRAS.get(row.requires, 'install it')})"


def row_config(config: Any, row: AblationRow, table: str) -> Any:
    """``config`` with ``row``'s overrides applied and RSKP switched on or off as the row says.

    Raises:
        ConfigError: an override names an unknown key or an invalid value; the message names the table and row.
    """
    from .config_io import apply_overrides

    try:
        changed = apply_overrides(config, list(row.overrides))
    except ConfigError as exc:
        raise ConfigError(f'ablation {table}, row "{row.name}": {exc}') from exc
    return attrs.evolve(changed, rskp_enabled=row.rskp)


def resolve_rows(config: Any, tables: Iterable[str]) -> list[tuple[str, AblationRow, Any]]:
    """``(table, row, config)`` for every row of ``tables``, in order: every row's overrides are applied up front, so
    an invalid key or value fails before anything is trained, with the row named."""
    return [(table, row, row_config(config, row, table)) for table in tables for row in ABLATIONS[table]]
