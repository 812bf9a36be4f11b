"""Oracle for issue 22's module size from ``enum mod_mem_type``: kcrash (dump opened with NO vmlinux,
the enum from the dump's BTF) gives every loaded module the size drgn 0.3.0 (Debian -dbg vmlinux)
reads as the kernel counts core memory: ``mem[t].size`` summed over the types that are not
``MOD_INIT_*`` (since v6.4), ``core_layout.size`` before."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import open_target
from kcrash.helpers.linux.module import for_each_module, module_name, module_size

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.list import list_for_each_entry  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False)]


def _drgn_sizes(dprog: Any) -> dict[str, int]:
    sizes = {}
    for mod in list_for_each_entry("struct module", dprog["modules"].address_of_(), "list"):
        name = mod.name.string_().decode()
        try:
            enum = dprog.type("enum mod_mem_type")
        except LookupError:
            sizes[name] = mod.core_layout.size.value_()
            continue
        core = [v for n, v in enum.enumerators if not n.startswith("MOD_INIT_") and 0 <= v < dprog["MOD_MEM_NUM_TYPES"]]
        sizes[name] = sum(mod.mem[v].size.value_() for v in core)
    return sizes


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_module_sizes_equal_drgn(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                 tmp_path: Path, kind: str, kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr)
    dprog = drgn.Program()
    dprog.set_core_dump(str(out / "vmcore.elf"))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        dprog.load_debug_info([str(lab_vmlinux_dbg(kernel))])
    with open_target(out / "vmcore.elf", tmp_path, orc=False) as prog:
        ours = {module_name(m): module_size(m) for m in for_each_module(prog)}
    expected = _drgn_sizes(dprog)
    assert ours == expected and len(ours) >= 3 and all(size > 0 for size in ours.values())
