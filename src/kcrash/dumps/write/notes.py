"""
kcrash.dumps.write.notes
========================

Builders of ELF note bytes: generic notes, x86-64 ``NT_PRSTATUS``, QEMU's CPU-state note and the
VMCOREINFO note. Used by the dump writers and by tests; round-trips with
:mod:`kcrash.dumps.notes` and :mod:`kcrash.dumps.cpustate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from kcrash._binary import binary_structs
from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_AARCH64, PRSTATUS_REGISTERS_X86_64

__all__ = ["build_note", "build_prstatus", "build_qemu_cpu_state", "build_vmcoreinfo_note"]


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * ((-len(data)) % 4)


def build_note(name: str, n_type: int, desc: bytes, *, little_endian: bool = True) -> bytes:
    """Return one encoded note (``Nhdr`` + padded name + padded desc)."""
    raw_name = name.encode() + b"\0"
    nhdr = binary_structs(little_endian, 8).Elf_Nhdr
    hdr = nhdr.pack(n_namesz=len(raw_name), n_descsz=len(desc), n_type=n_type)
    return hdr + _pad4(raw_name) + _pad4(desc)


def build_prstatus(pid: int, registers: Mapping[str, int], *, little_endian: bool = True,
                   machine: str = "x86_64") -> bytes:
    """Return a ``CORE``/``NT_PRSTATUS`` note for one CPU of ``machine`` (``"x86_64"``, ``"aarch64"``)."""
    aarch64 = machine == "aarch64"
    names = PRSTATUS_REGISTERS_AARCH64 if aarch64 else PRSTATUS_REGISTERS_X86_64
    regs = {f"pr_reg{i}": registers.get(name, 0) for i, name in enumerate(names)}
    structs = binary_structs(little_endian, 8)
    layout = structs.elf_prstatus_aarch64 if aarch64 else structs.elf_prstatus_x86_64
    desc = layout.pack(pr_pid=pid, **regs)
    return build_note("CORE", 1, desc, little_endian=little_endian)


def build_qemu_cpu_state(registers: Mapping[str, int], *, cr3: int = 0, cr4: int = 0,
                         segment_bases: Mapping[str, int] | None = None, little_endian: bool = True) -> bytes:
    """Return a ``QEMU`` CPU-state note (version 1, 440 bytes)."""
    layout = binary_structs(little_endian, 8).QEMUCPUState_x86_64
    values: dict[str, int | bytes] = {name: registers[name] for name in layout.fields if name in registers}
    for seg, base in (segment_bases or {}).items():
        values[f"{seg}_base"] = base
    values.update(version=1, size=layout.size, cr3=cr3, cr4=cr4)
    return build_note("QEMU", 0, layout.pack(**values), little_endian=little_endian)


def build_vmcoreinfo_note(text: str, *, little_endian: bool = True) -> bytes:
    """Return a ``VMCOREINFO`` note holding ``text``."""
    return build_note("VMCOREINFO", 0, text.encode(), little_endian=little_endian)
