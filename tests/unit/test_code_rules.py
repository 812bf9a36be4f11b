"""Rules of issue 22 item 5 that a grep can check: no speed hacks on private interfaces."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kcrash"


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))]


def test_no_private_interpreter_modules_or_load_polling() -> None:
    # CPython's private hash modules and /proc/loadavg polling were start-up and thread-count hacks;
    # hashlib and the CPU count replace them. (gc.freeze/set_threshold are the gc module's public
    # tuning interface and stay, in kcrash.cli.main only: bench/RESULTS.md "gc tuning".)
    banned = re.compile(r"import _sha|[\"']_sha(?:2|256)[\"']|/proc/loadavg")
    found = [f"{p.relative_to(SRC)}: {m.group(0)}" for p, text in _sources() for m in banned.finditer(text)]
    assert found == []


def test_gc_tuning_only_in_the_program_entry_point() -> None:
    found = sorted(str(p.relative_to(SRC)) for p, text in _sources() if re.search(r"gc\.(freeze|set_threshold)", text))
    assert found == ["cli/__init__.py"]


def test_each_slotted_class_says_why_it_is_not_a_dataclass() -> None:
    # Issue 22 item 5: a hand-written slotted class is either a class with behaviour or a record kept
    # for a measured reason (bench/RESULTS.md "dataclass creation"); the line above its __slots__ says which.
    # (An empty ``__slots__ = ()``, as on a subclass of int, adds no attributes and is not such a class.)
    bare = []
    for path, text in _sources():
        lines = text.split("\n")
        bare += [f"{path.relative_to(SRC)}:{i + 1}" for i, line in enumerate(lines)
                 if re.match(r"\s+__slots__ = (?!\(\))", line) and not lines[i - 1].strip().startswith("# slots:")]
    assert bare == []


def _function_imports(text: str) -> list[int]:
    # line numbers of the import statements inside a function body
    found: list[int] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and in_function:
                found.append(child.lineno)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(text), False)
    return found


def test_each_import_inside_a_function_says_why() -> None:
    # Issue 22 item 5: imports go at the top of the module, unless importing at first use measurably cuts
    # the start-up of the commands that do not use it (or breaks a cycle); such an import carries a
    # "# lazy: <why>" comment on its line or the line above (e.g. "# lazy: +47 ms CPU to import, ...").
    bare = []
    for path, text in _sources():
        lines = text.split("\n")
        bare += [f"{path.relative_to(SRC)}:{n}" for n in _function_imports(text)
                 if "# lazy:" not in lines[n - 1] and not lines[n - 2].strip().startswith("# lazy:")]
    assert bare == []
