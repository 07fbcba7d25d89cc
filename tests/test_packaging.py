"""What a built wheel holds: every package of the source tree and the packaged configs.

``.ci/run`` builds the wheel, installs it into a fresh virtual environment and runs the CLI from it; this test is
the fast guard that names the package a new folder forgot to add to ``pyproject.toml``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_table() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib (Python >= 3.11) reads pyproject.toml")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_in_the_wheel() -> None:
    table = _setuptools_table()
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "rskp_plugin").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(table["packages"])
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == {"rskp_heads"}
    assert table["package-dir"] == {"rskp_heads": "heads"} and (ROOT / "heads" / "__init__.py").is_file()


def test_packaged_configs_are_package_data() -> None:
    table = _setuptools_table()
    assert table["package-data"]["rskp_plugin"] == ["configs/*.yaml", "py.typed"]
    assert table["package-data"]["rskp_heads"] == ["recipes/*.yaml"]  # the built-in heads' recipes ship
    assert (ROOT / "rskp_plugin" / "py.typed").is_file()
    assert sorted(p.stem for p in (ROOT / "rskp_plugin" / "configs").glob("*.yaml")) == ["activitynet13", "paper", "quick", "thumos14"]
