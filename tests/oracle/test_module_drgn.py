"""Oracle for issue 22's module size from ``enum mod_mem_type``: kcrash (dump opened with NO vmlinux,
the enum from the dump's BTF) gives every loaded module the size drgn 0.3.0 (Debian -dbg vmlinux)
reads as the kernel counts core memory: ``mem[t].size`` summed over the types that are not
``MOD_INIT_*`` (since v6.4), ``core_layout.size`` before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import open_target
from kcrash.helpers.linux.module import for_each_module, module_name, module_size
from support.drgn_oracle import KDUMP_CASES, case_id, drgn_program

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.list import list_for_each_entry  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), *KDUMP_CASES]


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


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_module_sizes_equal_drgn(lab_case: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                 tmp_path: Path, case: tuple[Any, ...]) -> None:
    out = lab_case(case)
    dprog = drgn_program(out, lab_vmlinux_dbg(case[1]))
    with open_target(out / "vmcore.elf", tmp_path, orc=False) as prog:
        ours = {module_name(m): module_size(m) for m in for_each_module(prog)}
    expected = _drgn_sizes(dprog)
    assert ours == expected and len(ours) >= 3 and all(size > 0 for size in ours.values())
