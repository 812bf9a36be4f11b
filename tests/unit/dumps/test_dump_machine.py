"""Every dump format reports its machine: ELF ``e_machine`` 62/183, kdump's ``utsname.machine``, split parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.dumps.base import machine_from_e_machine, machine_from_uname
from kcrash.dumps.split import SplitDump
from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore
from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump
from kcrash.dumps.write.notes import build_note


@pytest.mark.parametrize(("e_machine", "machine"), [(62, "x86_64"), (183, "aarch64")])
def test_elf_machine(tmp_path: Path, e_machine: int, machine: str) -> None:
    write_elf_vmcore(tmp_path / "e", b"", [bytes_segment(0x1000, b"A" * 0x1000)], e_machine=e_machine)
    dump = open_dump(tmp_path / "e")
    assert dump.machine == machine
    assert (tmp_path / "e").read_bytes()[18:20] == e_machine.to_bytes(2, "little")


@pytest.mark.parametrize("flattened", [False, True])
@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_kdump_machine(tmp_path: Path, machine: str, flattened: bool) -> None:
    write_kdump(tmp_path / "k", KdumpSpec(pages={1: b"x" * 4096}, max_mapnr=4, machine=machine, flattened=flattened))
    assert open_dump(tmp_path / "k").machine == machine


def test_split_machine(tmp_path: Path) -> None:
    pages = {1: b"x" * 4096, 5: b"y" * 4096}
    for i, (lo, hi) in enumerate([(0, 4), (4, 8)]):
        write_kdump(tmp_path / f"k{i}", KdumpSpec(pages={p: v for p, v in pages.items() if lo <= p < hi},
                                                  max_mapnr=8, machine="aarch64", split=(lo, hi)))
    dump = open_dump([tmp_path / "k0", tmp_path / "k1"])
    assert isinstance(dump, SplitDump) and dump.machine == "aarch64"


def test_machine_names() -> None:
    assert machine_from_e_machine(62) == "x86_64"
    assert machine_from_e_machine(183) == "aarch64"
    assert machine_from_e_machine(243) == "elf-machine-243"
    assert machine_from_uname("arm64") == "aarch64"
    assert machine_from_uname("riscv64") == "riscv64"


@pytest.mark.parametrize(("size", "machine"), [(392, "aarch64"), (336, "x86_64"), (100, "Unknown")])
def test_kdump_unknown_uname_machine_from_prstatus_size(tmp_path: Path, size: int, machine: str) -> None:
    # QEMU 7.2 writes utsname.machine "Unknown" for aarch64 guests
    notes = build_note("CORE", 1, b"\1" * size) * 2
    write_kdump(tmp_path / "k", KdumpSpec(pages={1: b"x" * 4096}, max_mapnr=4, machine="Unknown", notes=notes))
    assert open_dump(tmp_path / "k").machine == machine
