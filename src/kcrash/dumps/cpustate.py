"""
kcrash.dumps.cpustate
=====================

The per-CPU notes of a dump: ``NT_PRSTATUS`` (``struct elf_prstatus``: registers and pid, one per
CPU, written by the kernel or by QEMU) and QEMU's ``QEMUCPUState`` note (control registers and
segment bases; x86-64 only). ``NT_PRSTATUS`` is parsed per machine: x86-64 (``pr_reg`` is
``struct user_regs_struct``) and aarch64 (``struct user_pt_regs``: ``x0``–``x30``, ``sp``, ``pc``,
``pstate``); other machines' notes are left as raw :class:`Note`\\ s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kcrash._binary import binary_structs
from kcrash.dumps.base import MACHINE_AARCH64, MACHINE_X86_64
from kcrash.dumps.notes import NT_PRSTATUS, Note
from kcrash.errors import CorruptDumpError

__all__ = [
    "PRSTATUS_REGISTERS_AARCH64",
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
#: ``pr_reg`` order on aarch64 (``struct user_pt_regs``)
PRSTATUS_REGISTERS_AARCH64: tuple[str, ...] = (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate")
_PRSTATUS_REGISTERS = {MACHINE_X86_64: PRSTATUS_REGISTERS_X86_64, MACHINE_AARCH64: PRSTATUS_REGISTERS_AARCH64}
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


def parse_prstatus(note: Note, *, little_endian: bool = True, machine: str = MACHINE_X86_64) -> PrStatus:
    """Parse ``struct elf_prstatus`` of ``machine`` from ``note`` (336 bytes on x86-64, 392 on aarch64)."""
    names = _PRSTATUS_REGISTERS.get(machine)
    if names is None:
        raise CorruptDumpError(f"NT_PRSTATUS of machine {machine!r} is not supported", note.offset)
    structs = binary_structs(little_endian, 8)
    layout = structs.elf_prstatus_aarch64 if machine == MACHINE_AARCH64 else structs.elf_prstatus_x86_64
    if len(note.desc) < layout.size:
        raise CorruptDumpError(f"NT_PRSTATUS desc is {len(note.desc)} bytes, expected {layout.size}",
                               note.offset)
    rec = layout.unpack(note.desc, 0, file_offset=note.offset)
    regs = {name: rec[f"pr_reg{i}"] for i, name in enumerate(names)}
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


def cpu_states(notes: Sequence[Note], *, little_endian: bool = True,
               machine: str = MACHINE_X86_64) -> list[CpuState]:
    """Pair the i-th ``CORE``/``NT_PRSTATUS`` note with the i-th ``QEMU`` note, one entry per CPU.

    :param machine: the dump's machine (:attr:`~kcrash.dumps.base.DumpFormat.machine`); it picks the
        ``pr_reg`` layout. A machine with no known layout has no CPU states (an empty list).
    """
    if machine not in _PRSTATUS_REGISTERS:
        return []
    prs = [parse_prstatus(n, little_endian=little_endian, machine=machine) for n in notes
           if n.name == "CORE" and n.n_type == NT_PRSTATUS]
    # /proc/kcore carries one NT_PRSTATUS of zeros (fs/proc/kcore.c fills only its size): no CPU was
    # saved there. A CPU the kernel or QEMU did save never has every register zero (pc, sp).
    prs = [p for p in prs if any(p.registers.values())]
    # QEMU's "QEMU" note (QEMUCPUState) is written for x86 guests only
    qemu = [parse_qemu_cpu_state(n, little_endian=little_endian) for n in notes
            if n.name == "QEMU" and n.n_type == 0] if machine == MACHINE_X86_64 else []
    count = max(len(prs), len(qemu))
    return [CpuState(i, prs[i] if i < len(prs) else None, qemu[i] if i < len(qemu) else None)
            for i in range(count)]
