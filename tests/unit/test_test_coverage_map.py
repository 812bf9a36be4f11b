"""Every module of the lower layers is imported by at least one test (issue 22 item 6), and test
basenames are unique (pytest's default import mode refuses two ``test_x.py`` in different
directories without ``__init__.py``: a full run stops at collection).

"Imported" is read from the source of every file under ``tests/`` (tests, conftests and the
builders in ``tests/support``), statically:

- ``import kcrash.a.b`` and ``from kcrash.a.b import c`` count ``kcrash.a.b`` (and ``kcrash.a.b.c``
  when that is a module); ``from kcrash.a import b`` counts ``kcrash.a.b``;
- a name a package re-exports does not count for the module it comes from (``from kcrash.unwind
  import unwind`` does not count ``kcrash.unwind.arch.x86_64``): a module's own test imports it by
  its name, so that the test is found from the module;
- a package (``__init__.py``) counts when any module inside it is imported (importing it runs the
  ``__init__``).

Run as a script (``python tests/unit/test_test_coverage_map.py``) it prints every module under
``src/kcrash`` that no test imports, cli and all.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
TESTS = ROOT / "tests"

#: the layers whose every module must be imported by a test
CHECKED = ("helpers", "analysis", "dumps", "memory", "debuginfo", "types", "unwind")

#: modules allowed to have no test yet, each with the reason; keep it short and empty it
ALLOWED_UNTESTED: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(top: Path) -> list[Path]:
    return sorted(p for p in top.rglob("*.py") if "__pycache__" not in p.parts)


def source_modules() -> dict[str, Path]:
    """Every module under src/kcrash: dotted name -> file."""
    return {_module_name(p): p for p in _python_files(SRC / "kcrash")}


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            for alias in node.names:
                names.add(f"{node.module}.{alias.name}")
    return {n for n in names if n == "kcrash" or n.startswith("kcrash.")}


def imported_by_tests(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the files under tests/ that import it (per the rules in the module docstring)."""
    users: dict[str, set[str]] = {}
    for path in _python_files(TESTS):
        for name in _imported_names(path):
            if name in modules:
                users.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return users


def untested_modules() -> list[str]:
    """Modules under src/kcrash that no file under tests/ imports."""
    modules = source_modules()
    users = imported_by_tests(modules)
    return [name for name, path in sorted(modules.items())
            if name not in users
            and not (path.name == "__init__.py" and any(u.startswith(name + ".") for u in users))]


def test_every_lower_layer_module_is_imported_by_a_test() -> None:
    checked = [m for m in untested_modules() if m.split(".")[1] in CHECKED]
    missing = sorted(set(checked) - set(ALLOWED_UNTESTED))
    assert not missing, f"modules no test imports (add tests/unit/<pkg>/test_<module>.py): {missing}"


def test_allow_list_is_not_stale() -> None:
    modules = source_modules()
    untested = set(untested_modules())
    stale = [m for m in ALLOWED_UNTESTED if m not in modules or m not in untested]
    assert not stale, f"remove from ALLOWED_UNTESTED (tested now, or gone): {stale}"


def test_the_rules_see_each_import_form(tmp_path: Path) -> None:
    # the three import forms count; a re-exported name does not count its source module
    probe = tmp_path / "probe.py"
    probe.write_text("import kcrash.dumps.registry\nfrom kcrash.memory.reader import MemoryReader\n"
                     "from kcrash.helpers.linux import cpumask\nfrom kcrash.unwind import unwind\n")
    names = _imported_names(probe) & set(source_modules())
    assert names == {"kcrash.dumps.registry", "kcrash.memory.reader", "kcrash.helpers.linux.cpumask",
                     "kcrash.helpers.linux", "kcrash.unwind"}


def test_test_basenames_are_unique() -> None:
    # tests/unit/unwind is a package (it has __init__.py): its modules are imported by dotted name
    basenames = Counter(p.name for p in TESTS.rglob("test_*.py")
                        if "__pycache__" not in p.parts and not (p.parent / "__init__.py").exists())
    assert not [name for name, n in basenames.items() if n > 1]


if __name__ == "__main__":
    for module in untested_modules():
        print(module)
