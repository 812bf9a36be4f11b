"""The ``>>>`` examples of every public helper (issue 22, item 11) run against a real dump, the lab's
6.12 HUNG_ABBA crash opened without vmlinux, and print what their docstrings show: the outputs in the
docstrings are that dump's. ``prog`` and ``task`` (PID 1) are given, as the ``kcrash.helpers.linux``
docstring says. The static checks (every parameter documented, calls that fit the signatures) are in
``tests/unit/helpers/test_helper_docstrings.py``. A failure's report is doctest's (the example, what
the docstring expects, what the dump gave): when the lab's kernel module or init change (a new dump,
other addresses), the docstring's output is updated to what the dump now gives.
"""

from __future__ import annotations

import doctest
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

import kcrash.types.program as program_module
from kcrash.analysis.target import open_target
from kcrash.helpers.linux.sched import find_task_or_none
from kcrash.types.program import Program
from support.helper_docs import program_members, public_helpers

pytestmark = pytest.mark.lab

PUBLIC = public_helpers()
PROGRAM = program_members()


@pytest.fixture(scope="module")
def prog(lab_crash: Callable[..., Path], kcrash_cache: Path) -> Iterator[Program]:
    with open_target(lab_crash("HUNG_ABBA", "6.12", False) / "vmcore.elf", kcrash_cache) as opened:
        yield opened


def _run(module: ModuleType, name: str, obj: object, prog: Program) -> tuple[doctest.TestResults, str]:
    globs = dict(vars(module)) | {"prog": prog, "task": find_task_or_none(prog, 1)}
    test = doctest.DocTestParser().get_doctest(inspect.getdoc(obj) or "", globs, f"{module.__name__}.{name}",
                                               None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    results = runner.run(test, out=report.append)
    return results, "".join(report)


@pytest.mark.parametrize(("module", "name", "obj"), PUBLIC, ids=[f"{m.__name__}.{n}" for m, n, _ in PUBLIC])
def test_helper_example_runs_and_prints_what_its_docstring_shows(module: ModuleType, name: str, obj: object,
                                                                 prog: Program) -> None:
    results, report = _run(module, name, obj, prog)
    assert results.attempted > 0, f"{module.__name__}.{name} has no example"
    assert results.failed == 0, report


@pytest.mark.parametrize(("name", "member"), PROGRAM, ids=[n for n, _ in PROGRAM])
def test_program_example_runs_and_prints_what_its_docstring_shows(name: str, member: object, prog: Program) -> None:
    results, report = _run(program_module, f"Program.{name}", member, prog)
    if results.attempted == 0:
        pytest.skip("its example is marked +SKIP (it would close the shared program)")
    assert results.failed == 0, report
