"""Real lab dumps: the ELF and kdump files of one crash read byte-identical at 10,000 random kernel
virtual and physical addresses; makedumpfile's lzo dump of a /proc/vmcore-shaped copy reads like the
zlib original; dump info agrees with lab.json."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.dumps.write.elf_vmcore import convert_to_proc_vmcore
from kcrash.errors import FaultError
from kcrash.memory import KernelMemory, open_kernel_memory

pytestmark = pytest.mark.lab

CRASHES = [("6.1", True), ("6.1", False), ("6.12", False), ("6.12", True)]
N = 10_000


def _read_or_fault(mem: KernelMemory, addr: int, physical: bool) -> bytes | str:
    try:
        return mem.read(addr, 64, physical=physical)
    except FaultError as exc:
        return exc.reason


def _virtual_addresses(mem: KernelMemory, rng: random.Random) -> list[int]:
    info = mem.vmcoreinfo
    assert info is not None
    section = info.get_symbol("mem_section")  # a direct-map pointer
    page_offset = section - mem.translate(section)
    stext = info.get_symbol("_stext")
    stacks = [c.prstatus.registers["rsp"] for c in mem.cpus if c.prstatus]
    rips = [c.prstatus.registers["rip"] for c in mem.cpus if c.prstatus]
    out = []
    for i in range(N):
        kind = i % 4
        if kind == 0:
            out.append(page_offset + rng.randrange(0, 256 << 20))
        elif kind == 1:
            out.append(stext + rng.randrange(0, 48 << 20))
        elif kind == 2:
            out.append(rng.choice(stacks) + rng.randrange(-(16 << 10), 16 << 10))
        else:
            out.append(rng.choice(rips) + rng.randrange(-(64 << 10), 64 << 10))
    return out


@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_elf_and_kdump_read_identically(lab_crash: Callable[..., Path], kernel: str, kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    elf = open_kernel_memory(open_dump(out / "vmcore.elf"))
    kdump = open_kernel_memory(open_dump(out / "vmcore.kdump"))
    assert elf.layout == kdump.layout
    rng = random.Random(f"{kernel}-{kaslr}")
    phys = [rng.randrange(0, 256 << 20) for _ in range(N)]
    virt = _virtual_addresses(elf, rng)
    readable = 0
    for addrs, physical in ((phys, True), (virt, False)):
        for addr in addrs:
            a, b = _read_or_fault(elf, addr, physical), _read_or_fault(kdump, addr, physical)
            assert a == b, (hex(addr), physical)
            readable += isinstance(a, bytes)
    assert readable > 1.8 * N


@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_dump_info_matches_lab_json(lab_crash: Callable[..., Path], kernel: str, kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    facts = json.loads((out / "lab.json").read_text())
    for name in ("vmcore.elf", "vmcore.kdump"):
        dump = open_dump(out / name)
        info = dump.vmcoreinfo_or_none()
        assert info is not None and info.osrelease == facts["kernel"]["release"]
        mem = open_kernel_memory(dump)
        assert (mem.layout.kaslr_offset != 0) == facts["kaslr"]
        assert len(mem.cpus) == 2


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="makedumpfile not installed")
@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES[:1] + CRASHES[2:3])
def test_makedumpfile_lzo_reads_like_zlib(lab_crash: Callable[..., Path], tmp_path: Path, kernel: str,
                                          kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    convert_to_proc_vmcore(open_dump(out / "vmcore.elf"), tmp_path / "vmcore")
    subprocess.run(["makedumpfile", "-l", "-d", "1", str(tmp_path / "vmcore"), str(tmp_path / "lzo")],
                   check=True, capture_output=True)
    (tmp_path / "vmcore").unlink()
    lzo = open_dump(tmp_path / "lzo")
    assert "lzo" in lzo.describe().codecs
    zlib = open_kernel_memory(open_dump(out / "vmcore.kdump"))
    lzo_mem = open_kernel_memory(lzo)
    for seg in lzo.segments():
        for addr in range(seg.start, seg.end, 1 << 20):
            size = min(1 << 20, seg.end - addr)
            assert lzo_mem.read(addr, size, physical=True) == zlib.read(addr, size, physical=True), hex(addr)
