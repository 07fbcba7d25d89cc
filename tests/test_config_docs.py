"""Every ``rskp`` config key is documented with its source, and docs/config.md lists them all."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from rskp_plugin.config import RSKPConfig, config_keys, keys_table

ROOT = Path(__file__).resolve().parents[1]
#: A key's documentation cites where its default comes from: the paper, the official code, or a measurement.
SOURCE = re.compile(r"\bpaper\b|\beq\. \d|\bTable \d|\bFig\. \d|\bofficial\b|benchmarks/RESULTS\.md")


def _leaves(cls: type) -> int:
    return sum(_leaves(f.type) if attrs.has(f.type) else 1 for f in attrs.fields(attrs.resolve_types(cls)))


def test_every_key_is_walked_and_documented_with_its_source() -> None:
    keys = config_keys()
    assert len(keys) == _leaves(RSKPConfig) and len({k.name for k in keys}) == len(keys)
    assert [k.name for k in keys if not k.doc] == []
    assert [k.name for k in keys if not SOURCE.search(k.doc)] == []
    names = {k.name for k in keys}
    assert {"summarizer.em_iters", "memory.enabled", "losses.intra_classification", "fusion.test_main",
            "fusion.pseudo_label_intra", "fusion.use_intra_at_test", "factored_branches"} <= names


def test_docs_table_is_in_sync() -> None:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    table = text.split("-->\n", 1)[1].split("<!-- /keys -->", 1)[0]
    assert table == keys_table(), (
        "docs/config.md is out of date: replace its table with the output of "
        "python -c 'from rskp_plugin.config import keys_table; print(keys_table(), end=\"\")'")
