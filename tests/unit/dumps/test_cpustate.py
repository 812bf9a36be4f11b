"""dumps.cpustate: the per-CPU notes; /proc/kcore's all-zero NT_PRSTATUS saves no CPU; arm64's 392-byte layout."""

from __future__ import annotations

import struct

import pytest

from kcrash._binary import binary_structs
from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_X86_64, cpu_states
from kcrash.dumps.notes import NT_PRSTATUS, Note
from kcrash.errors import CorruptDumpError


def _prstatus(pid: int, rip: int, rsp: int) -> Note:
    layout = binary_structs(True, 8).elf_prstatus_x86_64
    reg = {name: PRSTATUS_REGISTERS_X86_64.index(name) for name in ("rip", "rsp", "cs")}
    regs = {f"pr_reg{reg[name]}": value for name, value in (("rip", rip), ("rsp", rsp), ("cs", 0x10))}
    desc = layout.pack(pr_pid=pid, **regs)
    return Note("CORE", NT_PRSTATUS, desc, 0)


def test_saved_cpus_are_kept_in_order() -> None:
    notes = [_prstatus(7, 0xFFFFFFFF81000010, 0xFFFFC90000003F00), _prstatus(0, 0xFFFFFFFF81000020, 0xFFFFC90000013F00)]
    cpus = cpu_states(notes)
    assert [c.cpu for c in cpus] == [0, 1]
    assert [c.prstatus.registers["rip"] for c in cpus if c.prstatus] == [0xFFFFFFFF81000010, 0xFFFFFFFF81000020]


def test_kcores_zero_prstatus_is_no_cpu() -> None:
    zero = Note("CORE", NT_PRSTATUS, bytes(binary_structs(True, 8).elf_prstatus_x86_64.size), 0)
    assert cpu_states([zero]) == []
    assert len(cpu_states([zero, _prstatus(1, 0xFFFFFFFF81000010, 0xFFFFC90000003F00)])) == 1


def _aarch64_prstatus(pid: int, regs: list[int]) -> Note:
    # built by hand, not through the layout under test: 112 bytes of header, 34 registers, pr_fpvalid + pad
    head = bytearray(112)
    struct.pack_into("<i", head, 32, pid)  # pr_pid follows si_* (12), pr_cursig (2 + 2 pad) and 2 sigsets (16)
    return Note("CORE", NT_PRSTATUS, bytes(head) + struct.pack("<34Q", *regs) + bytes(8), 0)


def test_aarch64_prstatus_registers_by_name() -> None:
    regs = [0x1000 + i for i in range(31)] + [0xFFFF800080003F00, 0xFFFF800080010000, 0x600003C5]
    note = _aarch64_prstatus(42, regs)
    assert len(note.desc) == 392 == binary_structs(True, 8).elf_prstatus_aarch64.size
    (cpu,) = cpu_states([note], machine="aarch64")
    assert cpu.prstatus is not None and cpu.prstatus.pr_pid == 42
    r = cpu.prstatus.registers
    assert [r[f"x{i}"] for i in range(31)] == regs[:31]
    assert (r["sp"], r["pc"], r["pstate"]) == (0xFFFF800080003F00, 0xFFFF800080010000, 0x600003C5)
    assert len(r) == 34
    assert cpu.qemu is None


def test_unknown_machine_has_no_cpu_states() -> None:
    assert cpu_states([_prstatus(1, 0xFFFFFFFF81000010, 0xFFFFC90000003F00)], machine="riscv64") == []


def test_short_aarch64_prstatus_is_corrupt() -> None:
    with pytest.raises(CorruptDumpError):
        cpu_states([_prstatus(1, 0xFFFFFFFF81000010, 0xFFFFC90000003F00)], machine="aarch64")
