"""The README's layer list is the import-linter contract in pyproject.toml, with no exemptions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["type"] == "layers")


def _readme_layers() -> list[set[str]]:
    text = " ".join((ROOT / "README.md").read_text().split())
    match = re.search(r"layered bottom to top[^:]*\): (.*?)\. `oops` is text-only", text)
    assert match, "README has no layer list"
    return [{name.strip(" `") for name in step.split("|")} for step in match.group(1).split("→")]


def test_readme_lists_the_contract_layers_in_order() -> None:
    layers = _contract()["layers"]
    assert isinstance(layers, list)
    top_down = [{name.strip().removeprefix("kcrash.") for name in layer.split("|")} for layer in layers]
    assert _readme_layers() == list(reversed(top_down))


def test_layer_contract_has_no_exemptions() -> None:
    assert "ignore_imports" not in _contract()


def test_every_package_is_in_a_layer() -> None:
    named = {n for step in _readme_layers() for n in step}
    packages = {
        p.name
        for p in (ROOT / "src" / "kcrash").iterdir()
        if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")
    }
    packages = {p.removesuffix(".py") for p in packages} - {"__init__", "__main__"}
    assert packages == named
