"""Oracle for issue 18's drgn-compatible shell: each small drgn script of
``tests/fixtures/drgn_scripts/`` (ours, written for this test) prints exactly the same text under
drgn 0.3.0 (the Debian -dbg vmlinux and the lab module's .ko loaded, ``prog`` as ``drgn -c`` sets
it) and under ``kcrash shell DUMP -c`` (NO vmlinux: kallsyms, the dump's BTF and the module's split
BTF), on BUG 6.12, BUG 6.1 (KASLR), BUG 5.10 (KASLR) and HUNG_ABBA 6.12 (its D-state threads). The
scripts cover tasks and their states, the crashed thread's frames, blocked tasks' frames, the log
tail, slab_object_info, a list walk, an rbtree and an xarray walk, a per-CPU counter, symbol
lookups, Object formatting (structs included), open files and mounts, d_path, net devices, VMAs and
page conversions, a maple tree and a wait queue, and get_kconfig (absent on the lab kernels).

Known differences, asserted as such rather than skipped: on 5.10 the module has no BTF (split
module BTF came in v5.11), so the scripts that need the module's struct types or its per-CPU
variable's type fail in kcrash with a TypeLookupError naming the type while drgn (DWARF) runs
them.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.12", False), ("BUG", "6.1", True), ("BUG", "5.10", True), ("HUNG_ABBA", "6.12", False)]
SCRIPTS = sorted((Path(__file__).parents[1] / "fixtures" / "drgn_scripts").glob("*.py"))
#: scripts needing the module's own types (its BTF), which the 5.10 module does not have
NEEDS_MODULE_BTF = {"list_walk", "rbtree_xarray", "object_format", "percpu_counter"}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'kaslr' if c[2] else 'nokaslr'}")
def crash(request: pytest.FixtureRequest, lab_crash: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, str]:
    kind, kernel, kaslr = request.param
    out = lab_crash(kind, kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    dprog = drgn.Program()
    dprog.set_core_dump(str(out / "vmcore.elf"))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        dprog.load_debug_info([str(lab_vmlinux_dbg(kernel)), *([info["module"]["path"]] if info["module"] else [])])
    return out, dprog, kernel


def _under_drgn(dprog: Any, script: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script.read_text(), str(script), "exec"), {"prog": dprog, "__name__": "__main__"})
    return out.getvalue()


def _under_kcrash(dump: Path, script: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["shell", str(dump), "-c", script.read_text()])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_drgn_script_prints_the_same_under_kcrash_shell(crash: tuple[Path, Any, str], script: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dump, dprog, kernel = crash
    expected = _under_drgn(dprog, script)
    assert expected.strip(), f"{script.name} printed nothing under drgn"
    code, out, err = _under_kcrash(dump / "vmcore.elf", script, capsys)
    if kernel == "5.10" and script.stem in NEEDS_MODULE_BTF:
        # documented: no module BTF on 5.10, so kcrash has no kcrash_test_* types
        assert code == 1 and "TypeLookupError" in err and ("kcrash_test" in err or "no type" in err), err
        return
    assert (code, err) == (0, ""), err
    assert out == expected
