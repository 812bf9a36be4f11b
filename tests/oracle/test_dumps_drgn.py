"""Oracle: drgn 0.3.0 (libkdumpfile inside its wheel) agrees with kcrash on lab dumps (translation,
reads, release, KASLR offset, per-CPU registers) and on synthetic snappy/zstd kdump files."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.errors import FaultError
from kcrash.memory import open_kernel_memory
from kcrash.memory.kernel import find_panic_cpu_or_none
from support.synthetic import make_synthetic_kernel

drgn = pytest.importorskip("drgn")

CRASHES = [("6.1", True), ("6.1", False), ("6.12", False), ("6.12", True)]


def _program(path: Path) -> object:
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    prog.set_core_dump(str(path))
    return prog


@pytest.mark.lab
@pytest.mark.oracle
@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_translation_matches_drgn(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                  kernel: str, kaslr: bool) -> None:
    from drgn.helpers.linux.mm import follow_phys

    out = lab_crash("BUG", kernel, kaslr)
    prog = _program(out / "vmcore.kdump")
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(lab_vmlinux_dbg(kernel))])
    mem = open_kernel_memory(open_dump(out / "vmcore.kdump"))
    init_mm = prog["init_mm"].address_of_()
    rng = random.Random(kernel)
    page_offset = prog["page_offset_base"].value_()
    vmalloc = prog["vmalloc_base"].value_()
    stext = prog.symbol("_stext").address
    modules = [m.mem[0].base.value_() if hasattr(m, "mem") else m.core_layout.base.value_()
               for m in _modules(prog)]
    addrs = ([page_offset + rng.randrange(256 << 20) for _ in range(300)]
             + [stext + rng.randrange(32 << 20) for _ in range(300)]
             + [vmalloc + rng.randrange(64 << 20) for _ in range(200)]
             + [rng.choice(modules) + rng.randrange(64 << 10) for _ in range(200)])
    mapped = 0
    for addr in addrs:
        try:
            ours = mem.translate(addr)
        except FaultError:
            ours = None
        try:
            theirs = follow_phys(init_mm, addr).value_()
        except drgn.FaultError:
            theirs = None
        assert ours == theirs, hex(addr)
        mapped += ours is not None
    assert mapped > 500


def _modules(prog: object) -> list[object]:
    from drgn.helpers.linux.module import for_each_module

    return list(for_each_module(prog))


@pytest.mark.lab
@pytest.mark.oracle
@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_info_matches_drgn(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                           kernel: str, kaslr: bool) -> None:
    from drgn.helpers.linux.sched import cpu_curr

    out = lab_crash("BUG", kernel, kaslr)
    for name in ("vmcore.elf", "vmcore.kdump"):
        prog = _program(out / name)
        with contextlib.suppress(drgn.MissingDebugInfoError):
            prog.load_debug_info([str(lab_vmlinux_dbg(kernel))])
        dump = open_dump(out / name)
        mem = open_kernel_memory(dump)
        info = dump.vmcoreinfo_or_none()
        assert info is not None
        assert info.osrelease == prog["init_uts_ns"].name.release.string_().decode()
        assert mem.layout.kaslr_offset == info.kerneloffset
        assert mem.layout.kaslr_offset == prog.symbol("_stext").address - 0xFFFFFFFF81000000
        for cpu in mem.cpus:
            assert cpu.prstatus is not None
            regs = prog.stack_trace(cpu_curr(prog, cpu.cpu))[0].registers()
            assert (regs["rip"], regs["rsp"]) == (cpu.prstatus.registers["rip"], cpu.prstatus.registers["rsp"])
        # The notes-only guess: the one CPU not halted after an hlt (the others sit in stop_this_cpu),
        # None when QEMU froze another CPU before it reached its hlt; checked by drgn's reads.
        running = [c.cpu for c in mem.cpus if prog.read(c.prstatus.registers["rip"] - 1, 1) != b"\xf4"]
        guess = find_panic_cpu_or_none(mem)
        assert guess == (running[0] if len(running) == 1 else None)
        if guess is not None:
            crashed = prog.crashed_thread().stack_trace()[0].registers()
            assert crashed["rip"] == next(c for c in mem.cpus if c.cpu == guess).prstatus.registers["rip"]


@pytest.mark.oracle
@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
def test_synthetic_codecs_read_like_drgn(tmp_path: Path, codec: str) -> None:
    k = make_synthetic_kernel(seed=7)
    k.write_kdump(tmp_path / "d", codec=codec, nr_cpus=2)
    prog = _program(tmp_path / "d")
    dump = open_dump(tmp_path / "d")
    mem = open_kernel_memory(dump)
    for seg in dump.segments():
        assert bytes(prog.read(seg.start, seg.size, True)) == mem.read(seg.start, seg.size, physical=True)
