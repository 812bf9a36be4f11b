"""
kcrash.analysis.dumpinfo
========================

The report's facts about the dump file itself (:class:`~kcrash.model.DumpMetadata`): format,
codecs, dump level, size on disk, when it was collected, completeness and page counts, from the
format reader's header description. The collection time is the header's timestamp (kdump), else
the kernel's ``CRASHTIME`` from VMCOREINFO, else the file's modification time (QEMU records
neither); ``collected_from`` says which. :func:`crash_time_or_none` is the one rule for when the
kernel crashed (``sys``, ``dump info`` and the report all use it). :func:`dump_facts` is what
``dump info`` shows; :func:`debuginfo_sources` says how the symbols, types and unwind tables were
found. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kcrash import model
from kcrash.dumps import open_dump
from kcrash.dumps.base import DumpFormat
from kcrash.errors import KcrashError
from kcrash.helpers.linux.panic import crash_time_or_none as _timekeeper_seconds_or_none
from kcrash.memory.kernel import KernelMemory, find_panic_cpu_or_none, open_kernel_memory

if TYPE_CHECKING:
    from kcrash.dumps.cpustate import CpuState
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.types.program import Program

__all__ = ["crash_time_or_none", "debuginfo_sources", "dump_facts", "dump_metadata"]


def crash_time_or_none(vmcoreinfo: VmcoreInfo | None, prog: Program | None = None) -> int | None:
    """When the kernel crashed, in seconds since the epoch, or None: VMCOREINFO's ``CRASHTIME``
    (stored by ``crash_save_vmcoreinfo()`` in ``kernel/crash_core.c`` when kdump starts), else the
    timekeeper's ``xtime_sec`` at its last update (QEMU's dumps have no ``CRASHTIME``; needs ``prog``).

    :param vmcoreinfo: the dump's VMCOREINFO, if any
    :param prog: the dump opened with symbols and types, if it could be

    >>> crash_time_or_none(prog.vmcoreinfo, prog)  # doctest: +SKIP
    1765112400
    """
    if vmcoreinfo is not None and vmcoreinfo.crashtime:
        return vmcoreinfo.crashtime
    return _timekeeper_seconds_or_none(prog) if prog is not None else None


def dump_facts(handle: DumpFormat, prog: Program | None = None) -> dict[str, Any]:
    """The facts ``dump info`` shows, as JSON-ready data: the header description, VMCOREINFO's
    release and build-id, the crash time (:func:`crash_time_or_none`), the kernel layout and the
    CPU notes.

    :param handle: the open dump
    :param prog: the same dump opened with symbols and types, if it could be (for the crash time)
    """
    desc = handle.describe()
    memory = open_kernel_memory(handle)
    vmci = memory.vmcoreinfo
    data: dict[str, Any] = dataclasses.asdict(desc)
    data.update(
        kernel_release=(vmci.osrelease if vmci else None) or desc.utsname.get("release") or None,
        build_id=vmci.build_id if vmci else None,
        crash_time=crash_time_or_none(vmci, prog),
        page_size=vmci.page_size if vmci else desc.pages.page_size,
        has_vmcoreinfo=vmci is not None,
        kaslr_offset=memory.layout.kaslr_offset,
        phys_base=memory.layout.phys_base,
        page_table_root=memory.layout.pgd,
        paging_levels=memory.layout.levels,
        layout_source=memory.layout.source,
        cpus=_cpus(memory),
        panic_cpu=find_panic_cpu_or_none(memory),
    )
    return data


def _cpus(memory: KernelMemory) -> list[dict[str, Any]]:
    return [_cpu_row(cpu) for cpu in memory.cpus]


def _cpu_row(cpu: CpuState) -> dict[str, Any]:
    # NT_PRSTATUS's pr_pid is named for what its writer put there. The kernel's crash_save_cpu()
    # (kernel/crash_core.c) stores current->pid: "pid". QEMU's dump-guest-memory (dump/dump.c,
    # cpu_index() = cpu->cpu_index + 1, written by x86_fill_elf_prstatus()) stores the vCPU's index
    # plus one: "qemu_cpu_index", the index itself (QEMU's "CPU #N"). A dump with QEMU's own
    # QEMUCPUState notes is QEMU's.
    row: dict[str, Any] = {"cpu": cpu.cpu}
    if cpu.prstatus is not None:
        if cpu.qemu is not None:
            row["qemu_cpu_index"] = cpu.prstatus.pr_pid - 1
        else:
            row["pid"] = cpu.prstatus.pr_pid
        row["registers"] = cpu.prstatus.registers
    if cpu.qemu is not None:
        row.update(
            cr0=cpu.qemu.cr[0],
            cr2=cpu.qemu.cr[2],
            cr3=cpu.qemu.cr3,
            cr4=cpu.qemu.cr[4],
            segment_bases=cpu.qemu.segment_bases,
            segment_selectors=cpu.qemu.segment_selectors,
            kernel_gs_base=cpu.qemu.kernel_gs_base,
        )
        row.setdefault("registers", cpu.qemu.registers)
    return row


def dump_metadata(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, opened: DumpFormat | None = None
) -> model.DumpMetadata:
    """Describe the dump at ``paths`` (one file, or the parts of a split dump); ``opened`` is that
    dump already open (it is described, not reopened, and left open)."""
    files = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
    dump = opened if opened is not None else open_dump(files)
    try:
        desc = dump.describe()
        info = dump.vmcoreinfo_or_none()
    finally:
        if opened is None:
            dump.close()
    collected, source = _collected(desc.timestamp, info.crashtime if info is not None else None, files[0])
    return model.DumpMetadata(
        path=files[0] if len(files) == 1 else " ".join(files),
        format=desc.format,
        codecs=tuple(desc.codecs),
        dump_level=desc.dump_level,
        size=sum(os.path.getsize(f) for f in files),
        collected=collected,
        collected_from=source,
        incomplete=desc.incomplete,
        pages_total=desc.pages.present + desc.pages.excluded + desc.pages.lost,
        pages_dumped=desc.pages.present,
    )


def _collected(timestamp: int | None, crashtime: int | None, path: str) -> tuple[int, str]:
    if timestamp:
        return timestamp, "header"
    if crashtime:
        return crashtime, "vmcoreinfo"
    return int(os.stat(path).st_mtime), "file mtime"


def debuginfo_sources(prog: Program) -> dict[str, str]:
    """How the kernel's symbols, types and unwind tables of ``prog`` were found, one line each
    (``symbols``, ``types``, ``unwind``), for ``dump info``."""
    # lazy: +44 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.stack import kernel_unwinder

    symbols = prog.symbol_table
    facts = {"symbols": f"{symbols.source} ({symbols.num_symbols():,} symbols)" if symbols is not None else "unknown"}
    try:
        start, stop = prog.symbol_address("__start_BTF"), prog.symbol_address("__stop_BTF")
        facts["types"] = f"BTF in the kernel image, __start_BTF..__stop_BTF ({stop - start:,} bytes)"
    except KcrashError as exc:
        facts["types"] = f"unavailable: {exc}"
    try:
        unwinder = kernel_unwinder(prog)
    except KcrashError as exc:
        facts["unwind"] = f"unavailable: {exc}"
        return facts
    if unwinder.arch.machine == "aarch64":
        facts["unwind"] = "frame records (x29 chain), pt_regs at exception entries, PAC bits stripped (KERNELPACMASK)"
    elif unwinder.orc_error is not None:
        facts["unwind"] = f"no usable ORC table ({unwinder.orc_error}): frame pointers and stack scan, unreliable"
    else:
        tables = unwinder.orc.tables
        vmlinux = next(t for t in tables if t.name == "vmlinux")
        facts["unwind"] = (
            f"ORC from __start_orc_unwind_ip ({len(vmlinux.ips):,} entries, {vmlinux.format} layout)"
            f", {len(tables) - 1} module table(s)"
        )
    return facts
