"""dumps.cpustate: the per-CPU notes; /proc/kcore's all-zero NT_PRSTATUS saves no CPU."""

from __future__ import annotations

from kcrash._binary import binary_structs
from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_X86_64, cpu_states
from kcrash.dumps.notes import NT_PRSTATUS, Note


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
