"""drgn, the oracle of tests/oracle: one way to open a lab crash with the Debian -dbg vmlinux.

drgn (PyPI 0.3.0) reads the crash's ``vmcore.elf`` with the -dbg vmlinux, the lab module's .ko
(when the lab built one for that kernel: ``lab.json``'s ``module``) and, when asked, the -dbg
package's debug .ko of the other loaded modules (pvpanic, qemu_fw_cfg), so drgn names every frame
(usr/lib/debug/boot/vmlinux-* -> usr/lib/debug/lib/modules/*/kernel/drivers/). A file drgn finds no
debug info in is not an error here: drgn raises MissingDebugInfoError for the modules it was not
given, after loading what it was given.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

#: the four dumps most oracles compare on: 6.1 (KASLR), 6.12, Debian 11's 5.10 (KASLR), sid's 7.2
LAB_CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), ("BUG", "5.10", True), ("SYSRQ", "7", False)]


def case_id(case: tuple[str, str, bool]) -> str:
    """The test id of a lab case: ``BUG-6.1-kaslr``."""
    return f"{case[0]}-{case[1]}-{'kaslr' if case[2] else 'nokaslr'}"


def lab_info(crash_dir: Path) -> dict[str, Any]:
    """The crash's ``lab.json`` (kernel, module and what the lab planted)."""
    info: dict[str, Any] = json.loads((crash_dir / "lab.json").read_text())
    return info


def drgn_program(crash_dir: Path, vmlinux: Path, *, other_modules: bool = False, core: str = "vmcore.elf") -> Any:
    """A ``drgn.Program`` on the crash's ``core`` (``vmcore.elf``; a kdump lab crash has ``vmcore.kcrash``) with
    the -dbg ``vmlinux``, the lab module's .ko if the crash has one, and with ``other_modules`` the debug .ko of
    the other modules."""
    import drgn

    module = lab_info(crash_dir)["module"]
    files = [str(vmlinux), *([module["path"]] if module else [])]
    if other_modules:
        files += sorted(str(p) for p in vmlinux.parents[1].glob("lib/modules/*/kernel/drivers/**/*.ko"))
    prog = drgn.Program()
    prog.set_core_dump(str(crash_dir / core))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info(files)
    return prog
