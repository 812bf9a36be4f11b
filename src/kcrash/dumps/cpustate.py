"""
kcrash.dumps.cpustate
=====================

The per-CPU notes of a dump: ``NT_PRSTATUS`` (``struct elf_prstatus``: registers and pid, one per
CPU, written by the kernel or by QEMU) and QEMU's ``QEMUCPUState`` note (control registers and
segment bases). x86-64 layouts only; other architectures' notes are left as raw :class:`Note`\\ s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kcrash._binary import binary_structs
from kcrash.dumps.notes import NT_PRSTATUS, Note
from kcrash.errors import CorruptDumpError

__all__ = [
    "PRSTATUS_REGISTERS_X86_64",
    "CpuState",
    "PrStatus",
    "QemuCpuState",
    "cpu_states",
    "parse_prstatus",
    "parse_qemu_cpu_state",
]

#: ``pr_reg`` order on x86-64 (the first 21 are ``struct pt_regs``).
PRSTATUS_REGISTERS_X86_64: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
)
_QEMU_SEGMENTS = ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt")
_QEMU_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
              "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")


@dataclass(frozen=True, slots=True)
class PrStatus:
    """One ``NT_PRSTATUS`` note: ``pr_pid`` (the running task's pid when the kernel wrote it, the vCPU index + 1
    when QEMU did) and ``registers`` by name."""

    pr_pid: int
    pr_cursig: int
    registers: dict[str, int]


@dataclass(frozen=True, slots=True)
class QemuCpuState:
    """One QEMU ``QEMUCPUState`` note: general registers, segment bases/selectors, CR0–CR4."""

    version: int
    registers: dict[str, int]
    segment_bases: dict[str, int]
    segment_selectors: dict[str, int]
    cr: tuple[int, int, int, int, int]
    kernel_gs_base: int | None

    @property
    def cr3(self) -> int:
        """Return CR3 (the page-table root and PCID bits) as saved."""
        return self.cr[3]


@dataclass(frozen=True, slots=True)
class CpuState:
    """What the notes say about CPU ``cpu`` (index in note order)."""

    cpu: int
    prstatus: PrStatus | None
    qemu: QemuCpuState | None


def parse_prstatus(note: Note, *, little_endian: bool = True) -> PrStatus:
    """Parse an x86-64 ``struct elf_prstatus`` (336 bytes) from ``note``."""
    layout = binary_structs(little_endian, 8).elf_prstatus_x86_64
    if len(note.desc) < layout.size:
        raise CorruptDumpError(f"NT_PRSTATUS desc is {len(note.desc)} bytes, expected {layout.size}",
                               note.offset)
    rec = layout.unpack(note.desc, 0, file_offset=note.offset)
    regs = {name: rec[f"pr_reg{i}"] for i, name in enumerate(PRSTATUS_REGISTERS_X86_64)}
    return PrStatus(rec["pr_pid"], rec["pr_cursig"], regs)


def parse_qemu_cpu_state(note: Note, *, little_endian: bool = True) -> QemuCpuState:
    """Parse QEMU's x86-64 CPU-state note (version 1; 432 bytes, 440 with ``kernel_gs_base``)."""
    layout = binary_structs(little_endian, 8).QEMUCPUState_x86_64
    desc = note.desc
    if len(desc) < layout.size - 8:
        raise CorruptDumpError(f"QEMU CPU-state note is {len(desc)} bytes", note.offset)
    has_kgs = len(desc) >= layout.size
    rec = layout.unpack(desc.ljust(layout.size, b"\0"), 0, file_offset=note.offset)
    return QemuCpuState(
        version=rec["version"],
        registers={r: rec[r] for r in _QEMU_GPRS},
        segment_bases={s: rec[f"{s}_base"] for s in _QEMU_SEGMENTS},
        segment_selectors={s: rec[f"{s}_selector"] for s in _QEMU_SEGMENTS},
        cr=(rec["cr0"], rec["cr1"], rec["cr2"], rec["cr3"], rec["cr4"]),
        kernel_gs_base=rec["kernel_gs_base"] if has_kgs else None,
    )


def cpu_states(notes: Sequence[Note], *, little_endian: bool = True) -> list[CpuState]:
    """Pair the i-th ``CORE``/``NT_PRSTATUS`` note with the i-th ``QEMU`` note, one entry per CPU."""
    prs = [parse_prstatus(n, little_endian=little_endian) for n in notes
           if n.name == "CORE" and n.n_type == NT_PRSTATUS]
    # /proc/kcore carries one NT_PRSTATUS of zeros (fs/proc/kcore.c fills only its size): no CPU was
    # saved there. A CPU the kernel or QEMU did save never has every register zero (rip, rsp, cs).
    prs = [p for p in prs if any(p.registers.values())]
    qemu = [parse_qemu_cpu_state(n, little_endian=little_endian) for n in notes
            if n.name == "QEMU" and n.n_type == 0]
    count = max(len(prs), len(qemu))
    return [CpuState(i, prs[i] if i < len(prs) else None, qemu[i] if i < len(qemu) else None)
            for i in range(count)]
