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

import pytest

#: the four dumps most oracles compare on: 6.1 (KASLR), 6.12, Debian 11's 5.10 (KASLR), sid's 7.2
LAB_CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), ("BUG", "5.10", True), ("SYSRQ", "7", False)]

#: The kdump lab's dumps (issue 20, ``kcrash lab crash KIND --via kdump``) as cases ``(kind, kernel,
#: kaslr, file)``: ``vmcore.kcrash`` is the dump kcrash's collector wrote in the capture kernel
#: (``collect vmcore -c -d 31 /proc/vmcore``), ``vmcore.makedumpfile`` makedumpfile's from the same
#: ``/proc/vmcore``. The ``lab_case`` fixture (tests/conftest.py) gives such a case a directory in
#: which ``vmcore.elf`` and ``vmcore.kdump`` both name that one file, so an oracle written for the
#: QEMU lab's ELF/kdump pair reads it unchanged; what compares the pair skips (:func:`skip_kdump_pair`).
KDUMP_CASES = [("BUG", "6.12", False, "vmcore.kcrash"), ("BUG", "6.1", False, "vmcore.kcrash"),
               ("SYSRQ", "6.12", False, "vmcore.kcrash"), ("BUG", "6.1", False, "vmcore.makedumpfile"),
               ("BUG", "6.12", False, "vmcore.makedumpfile")]
#: the dumps kcrash's collector wrote (issue 20's "Done when": BUG on 6.12 and 6.1, SYSRQ on 6.12) and
#: makedumpfile's readable one (6.1): the costlier oracles read these; makedumpfile's 6.12 dump (slab
#: pages dropped) is read by the few that need no slab object
KDUMP_KCRASH = KDUMP_CASES[:3]
KDUMP_READABLE = KDUMP_CASES[:4]
#: makedumpfile 1.7.2 predates 6.10's slab changes: at -d 8 it drops slab pages as user pages there
#: (modelled page by page in tests/lab/test_collect_vmcore.py), so every slab object (task_structs,
#: files, sockets, the lab module's objects) is missing from its 6.12 dump
MAKEDUMPFILE_LOSES_SLAB = frozenset({"6.12"})
#: what a ``-d 31`` dump leaves out (kdump-tools' default): free, user, page-cache pages
KDUMP_EXCLUDES = "-d 31 excludes free, user and page-cache pages"


def case_id(case: tuple[Any, ...]) -> str:
    """The test id of a lab case: ``BUG-6.1-kaslr``; of a kdump case ``BUG-6.12-kdump-kcrash``."""
    if len(case) == 4:
        return f"{case[0]}-{case[1]}-kdump-{case[3].removeprefix('vmcore.')}"
    return f"{case[0]}-{case[1]}-{'kaslr' if case[2] else 'nokaslr'}"


def is_kdump(crash_dir: Path) -> bool:
    """Whether ``crash_dir`` is a kdump case's directory (its dump came through a capture kernel)."""
    return lab_info(crash_dir).get("via") == "kdump"


def skip_kdump_pair(crash_dir: Path) -> None:
    """Skip a comparison of a QEMU crash's ``vmcore.elf`` with its ``vmcore.kdump`` on a kdump case: that
    crash has one dump per collector (kcrash's against makedumpfile's is test_kdump_drgn's business)."""
    if is_kdump(crash_dir):
        pytest.skip("kdump case: one dump file, no ELF/kdump pair of the same dump")


def skip_unless_first_kdump(crash_dir: Path, what: str) -> None:
    """Skip a costly check (``what``, its cost) on every kdump case but kcrash's BUG 6.12 dump: it reads
    what the kernel alone decides (the same on the QEMU dump of that kernel), so one kdump file shows
    the format reads it."""
    if is_kdump(crash_dir) and ((crash_dir / "vmcore.elf").resolve().name, lab_info(crash_dir)["kind"],
                                lab_info(crash_dir)["kernel"]["flavour"]) != ("vmcore.kcrash", "BUG", "6.12"):
        pytest.skip(f"{what}: of the kdump dumps, read on kcrash's BUG 6.12 one only")


def skip_lost_slab(case: tuple[Any, ...]) -> None:
    """Skip a slab-dependent oracle on makedumpfile's dump of a kernel it drops slab pages of."""
    if len(case) == 4 and case[3] == "vmcore.makedumpfile" and case[1] in MAKEDUMPFILE_LOSES_SLAB:
        pytest.skip("makedumpfile 1.7.2 drops slab pages as user pages on this kernel (task_structs, slab objects)")


def lab_info(crash_dir: Path) -> dict[str, Any]:
    """The crash's ``lab.json`` (kernel, module and what the lab planted)."""
    info: dict[str, Any] = json.loads((crash_dir / "lab.json").read_text())
    return info


def drgn_program(crash_dir: Path, vmlinux: Path, *, other_modules: bool = False, core: str = "vmcore.elf") -> Any:
    """A ``drgn.Program`` on the crash's ``core`` (``vmcore.elf``; a kdump lab crash has ``vmcore.kcrash``) with
    the -dbg ``vmlinux``, the lab module's .ko if the crash has one, and with ``other_modules`` the debug .ko of
    the other modules. A kdump case's program is made once per process and shared."""
    key = (crash_dir, vmlinux, other_modules, core)
    if key in _SHARED:
        return _SHARED[key]
    import drgn

    module = lab_info(crash_dir)["module"]
    files = [str(vmlinux), *([module["path"]] if module else [])]
    if other_modules:
        files += sorted(str(p) for p in vmlinux.parents[1].glob("lib/modules/*/kernel/drivers/**/*.ko"))
    prog = drgn.Program()
    prog.set_core_dump(str(crash_dir / core))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info(files)
    if is_kdump(crash_dir):
        _SHARED[key] = prog
    return prog


# a kdump case's drgn programs, shared by the oracle modules one pytest process runs (each load costs
# seconds; the QEMU cases keep one program per module fixture, as before)
_SHARED: dict[tuple[Path, Path, bool, str], Any] = {}


def module_kallsyms_symbol(dprog: Any, address: int) -> tuple[str, int] | None:
    """drgn's symbol at ``address`` from the in-memory kallsyms of the module holding it (drgn's
    ``module_kallsyms``): for modules drgn has no debug .ko of (the lab unpacks the debug .ko of the
    QEMU guest's modules; the kdump guest also loads 9p, netfs and virtio modules). ``(name, start)``,
    the nearest symbol below; one of size 0 (6.1's ``__ksymtab_*`` entries) runs to the next symbol,
    as kallsyms' symbols do."""
    from drgn.helpers.linux.kallsyms import module_kallsyms
    from drgn.helpers.linux.module import address_to_module

    module = address_to_module(dprog, address)
    below = [sym for sym in module_kallsyms(module) if sym.address <= address] if module else []
    if not below:
        return None
    sym = max(below, key=lambda s: s.address)
    return (sym.name, sym.address) if sym.size == 0 or address < sym.address + sym.size else None
