"""The import-layer contract (import-linter) passes on our tree and fails on an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(LINT.parent), "PYTHONPATH": str(tree / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_contract_holds(tmp_path: Path) -> None:
    proc = _lint(_copy_tree(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("module", "upward"), [
    ("dumps/__init__.py", "kcrash.cli"),
    ("memory/__init__.py", "kcrash.debuginfo"),
    ("oops/__init__.py", "kcrash.dumps"),
])
def test_upward_import_is_refused(tmp_path: Path, module: str, upward: str) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / "src" / "kcrash" / module
    target.write_text(target.read_text() + f"\nimport {upward}  # noqa\n")
    proc = _lint(tree)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout
