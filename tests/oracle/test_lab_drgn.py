"""Oracle: drgn (PyPI) with the Debian -dbg vmlinux reads our lab dumps and sees the module crash."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


def _crashed_stack(dump: Path, debug_files: list[Path]) -> list[str]:
    prog = drgn.Program()
    prog.set_core_dump(str(dump))
    # Other modules of the guest have no debug info here; vmlinux and ours are loaded.
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(p) for p in debug_files])
    return [frame.name or "" for frame in prog.crashed_thread().stack_trace()]


@pytest.mark.parametrize(("kernel", "kaslr"), [("6.1", True), ("6.12", False)])
def test_drgn_sees_the_module_crash_in_the_crashed_thread(
        lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path], kernel: str, kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    vmlinux = lab_vmlinux_dbg(kernel)
    dbg_modules = sorted(vmlinux.parents[2].glob("lib/modules/*/kernel/drivers/**/*.ko"))
    names = _crashed_stack(out / "vmcore.elf", [vmlinux, Path(info["module"]["path"]), *dbg_modules])
    crash_fn = info["crash_function"]
    assert crash_fn in names
    # The module's two noinline levels sit right above it, then the debugfs write path.
    i = names.index(crash_fn)
    assert names[i + 1:i + 3] == ["kcrash_test_level2", "kcrash_test_level1"]
    assert "panic" in names[:i]
