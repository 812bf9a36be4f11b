"""The arm64 lab: Debian's arm64 kernels crashed under qemu-system-aarch64 (TCG), checked against the
console and against drgn 0.3.0 with the arm64 ``-dbg`` vmlinux (slow: boots guests, loads ~400 MB of DWARF)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from kcrash.lab.boot import BootOptions, LiveGuest, boot_live
from kcrash.lab.kinds import get_kind, kind_for_arch

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.printk import get_dmesg  # noqa: E402  (after the importorskip)

pytestmark = pytest.mark.lab

CASES = [("SYSRQ", "6.12", False), ("BUG", "6.12", False), ("BUG", "6.12", True), ("HUNG_ABBA", "6.12", False),
         ("SYSRQ", "6.1", False), ("BUG", "6.1", False), ("BUG", "6.1", True)]
EM_AARCH64 = 183
NT_PRSTATUS = 1
#: arm64 elf_prstatus: x0-x30, sp, pc, pstate (34 x 8 bytes) after the 112-byte common part, plus fpvalid
PRSTATUS_SIZE = 392


def _notes(path: Path) -> list[tuple[str, int | str, bytes]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        out = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_NOTE":
                for note in seg.iter_notes():
                    desc = note["n_desc"]
                    raw = desc.encode("latin-1") if isinstance(desc, str) else bytes(desc)
                    # pyelftools names the types it knows (NT_PRSTATUS, NT_FPREGSET, ...)
                    ntype = NT_PRSTATUS if note["n_type"] == "NT_PRSTATUS" else note["n_type"]
                    out.append((note["n_name"], ntype, raw))
        return out


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_arm64_crash_dir_holds_aarch64_dumps_and_the_panic(lab_crash: Callable[..., Path], kind: str,
                                                           kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr, "arm64")
    assert "-arm64-" in out.name
    info = json.loads((out / "lab.json").read_text())
    assert info["arch"] == "arm64" and info["kind"] == kind and info["kernel"]["flavour"] == kernel
    assert info["kaslr"] == kaslr and ("nokaslr" in info["cmdline"].split()) != kaslr
    assert info["kernel"]["release"].endswith("-arm64") and info["release_booted"] == info["kernel"]["release"]
    assert info["panic_detected_by"] == "console" and info["status_after_stop"] == "paused"
    assert info["collector"]["file"] is None and info["collector"]["skipped"]
    assert kind_for_arch(get_kind(kind), "arm64").panic_message in info["panic_line"]
    assert info["expected_panic_message"] in info["panic_line"]
    assert info["timings"]["boot_to_panic_s"] > 0 and info["timings"]["dump_elf_s"] > 0
    console = (out / "console.log").read_text(errors="replace")
    assert "console=ttyAMA0" in console and f"Kernel panic - not syncing: {info['panic_line']}" in console
    assert "---[ end Kernel panic" in console
    # the test module was cross-built and loaded: it printed where it planted its objects
    assert info["module"] is not None and info["planted"]["planted_count_printed"] == 100
    assert info["planted"]["list_address"] >> 48 == 0xFFFF
    with (out / "vmcore.elf").open("rb") as f:
        header = ELFFile(f).header
        assert header["e_machine"] == "EM_AARCH64" and header["e_ident"]["EI_CLASS"] == "ELFCLASS64"
    with (out / "vmcore.elf").open("rb") as f:
        f.seek(18)
        assert struct.unpack("<H", f.read(2))[0] == EM_AARCH64
    notes = _notes(out / "vmcore.elf")
    prstatus = [desc for name, ntype, desc in notes if name == "CORE" and ntype == NT_PRSTATUS]
    assert len(prstatus) == info["smp"] and {len(d) for d in prstatus} == {PRSTATUS_SIZE}
    vmcoreinfo = dict(line.split("=", 1) for name, _, desc in notes if name == "VMCOREINFO"
                      for line in desc.decode("ascii", errors="replace").splitlines() if "=" in line)
    assert vmcoreinfo["OSRELEASE"] == info["kernel"]["release"]
    assert {"NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)"} <= set(vmcoreinfo)
    assert (int(vmcoreinfo["KERNELOFFSET"], 16) != 0) == kaslr
    assert (out / "vmcore.kdump").read_bytes()[:16].rstrip(b"\0") == b"makedumpfile"


def _drgn(core: Path, vmlinux: Path) -> Any:
    prog = drgn.Program()
    prog.set_core_dump(str(core))
    prog.load_debug_info([str(vmlinux)])
    return prog


def _kdump_machine(path: Path) -> bytes:
    # QEMU's flattened kdump: the disk_dump_header (signature "KDUMP   ", version, new_utsname) is the
    # first data block; utsname.machine is its fifth 65-byte field.
    data = path.read_bytes()[:1 << 16]
    at = data.find(b"KDUMP   ")
    assert at >= 0, "no kdump header"
    machine = data[at + 12 + 4 * 65: at + 12 + 5 * 65]
    return machine.split(b"\0")[0]


@pytest.mark.oracle
@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_drgn_reads_the_arm64_elf_dump(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[..., Path],
                                       kind: str, kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr, "arm64")
    prog = _drgn(out / "vmcore.elf", lab_vmlinux_dbg(kernel, "arm64"))
    assert prog.platform.arch == drgn.Architecture.AARCH64
    assert prog["init_task"].comm.string_() == b"swapper/0"
    assert prog["init_uts_ns"].name.release.string_().decode() == json.loads((out / "lab.json").read_text())[
        "kernel"]["release"]
    log = get_dmesg(prog).decode(errors="replace")
    panic_line = json.loads((out / "lab.json").read_text())["panic_line"]
    assert f"Kernel panic - not syncing: {panic_line}" in log and "kcrash-lab: ready kind=" + kind in log
    names = [frame.name for frame in prog.crashed_thread().stack_trace()]
    assert "panic" in names or "vpanic" in names


@pytest.mark.oracle
@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_drgn_and_the_arm64_kdump_file(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[..., Path],
                                       kind: str, kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr, "arm64")
    try:
        prog = _drgn(out / "vmcore.kdump", lab_vmlinux_dbg(kernel, "arm64"))
    except Exception as exc:
        # QEMU 7.2 writes utsname.machine "Unknown" into an aarch64 kdump header (x86_64 ones say
        # "x86_64"), and libkdumpfile, drgn's kdump reader, takes the architecture from there.
        if "KDUMP_ATTR_ARCH_NAME" not in str(exc):
            raise
        assert _kdump_machine(out / "vmcore.kdump") == b"Unknown"
        pytest.skip("drgn 0.3.0 cannot open QEMU's arm64 kdump-zlib file: its header names machine 'Unknown', "
                    "so libkdumpfile has no architecture")
    assert prog["init_task"].comm.string_() == b"swapper/0"


def test_a_live_arm64_guest_comes_up_with_a_shared_ram_file(kcrash_cache: Path) -> None:
    seen: list[tuple[LiveGuest, int, str]] = []

    def on_ready(guest: LiveGuest) -> None:
        assert guest.ram_file is not None
        seen.append((guest, guest.ram_file.stat().st_size, guest.serial.read_text(errors="replace")))

    boot_live(kcrash_cache, BootOptions("6.12", gdb_port=None, arch="arm64", boot_timeout=240), on_ready,
              stop_after=1)
    ((guest, ram_size, console),) = seen
    assert guest.release.endswith("-arm64") and ram_size == 256 << 20
    assert "console=ttyAMA0" in console and "kcrash-lab: ready kind=none" in console
