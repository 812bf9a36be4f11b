"""Every dump format reports its machine: ELF ``e_machine`` 62/183, kdump's ``utsname.machine``, split parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.dumps.base import machine_from_e_machine, machine_from_uname
from kcrash.dumps.split import SplitDump
from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore
from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump


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
