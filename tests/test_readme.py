"""The README's Python snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"no python block under '{heading}'"
    return blocks[0]


def test_your_own_training_loop_runs_and_fills_the_memory_bank() -> None:
    namespace: dict = {}
    exec(compile(_snippet("Your own training loop"), "README.md", "exec"), namespace)
    model, scores, cas = namespace["model"], namespace["scores"], namespace["cas"]
    assert model.memory_ready and model.rampup == 1.0
    assert scores.shape[0] == cas.shape[0] == 8 and bool(scores.isfinite().all())


def test_python_and_notebooks_runs_a_whole_training() -> None:
    namespace: dict = {}
    exec(compile(_snippet("Python and notebooks"), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.selection == "heldout" and len(result.history) == 1 and result.best["epoch"] == 3
    assert 0 <= result.best["test"]["avg_map_percent"] <= 100
