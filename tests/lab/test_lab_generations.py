"""The oldest and newest kernel lines the lab boots, Debian 11's 5.10 and unstable's 7.x (fetched through
a private apt configuration): a sysrq crash gives the same four files as on bookworm's kernels, its
dump's log has the panic line, and the fetched ``-dbg`` vmlinux is the kernel that crashed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

from kcrash.cli import main
from kcrash.dumps import open_dump
from kcrash.lab.crash import FILES

pytestmark = pytest.mark.lab

KERNELS = ["5.10", "7"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_sysrq_crash_gives_the_four_files_and_its_log(lab_crash: Callable[..., Path], kernel: str,
                                                      tmp_path: Path) -> None:
    out = lab_crash("SYSRQ", kernel)
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    info = json.loads((out / "lab.json").read_text())
    assert info["kernel"]["flavour"] == kernel and info["status_after_stop"] == "guest-panicked"
    assert info["release_booted"] == info["kernel"]["release"]
    assert (out / "vmcore.kdump").read_bytes()[:16].rstrip(b"\0") == b"makedumpfile"
    for dump in ("vmcore.elf", "vmcore.kdump"):
        log = tmp_path / f"{dump}.txt"
        assert main(["dump", "dmesg", str(out / dump), str(log)]) == 0
        assert "Kernel panic - not syncing: sysrq triggered crash" in log.read_text(), dump


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_dbg_vmlinux_is_the_crashed_kernel(lab_crash: Callable[..., Path],
                                                lab_vmlinux_dbg: Callable[[str], Path], kernel: str) -> None:
    dump = open_dump(lab_crash("SYSRQ", kernel) / "vmcore.elf")
    try:
        info = dump.vmcoreinfo_or_none()
    finally:
        dump.close()
    with lab_vmlinux_dbg(kernel).open("rb") as f:
        elf = ELFFile(f)
        assert elf.get_section_by_name(".debug_info") is not None
        notes = elf.get_section_by_name(".notes")
        assert isinstance(notes, NoteSection)
        build_id = next(n["n_desc"] for n in notes.iter_notes()
                        if n["n_name"] == "GNU" and n["n_type"] == "NT_GNU_BUILD_ID")
    assert info is not None and info.build_id is not None and info.build_id.startswith(build_id)
