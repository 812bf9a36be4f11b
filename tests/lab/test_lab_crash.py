"""Real crashes of real Debian kernels under QEMU (slow: each run boots a guest)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kcrash.lab.kinds import get_kind

pytestmark = pytest.mark.lab

CASES = [
    ("SYSRQ", "6.1", False), ("BUG", "6.1", True), ("HUNG_ABBA", "6.1", False),
    ("SYSRQ", "6.12", True), ("BUG", "6.12", False), ("HUNG_ABBA", "6.12", False),
]


def _notes(path: Path) -> list[tuple[str, int, bytes]]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        out = []
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_NOTE":
                for note in seg.iter_notes():
                    desc = note["n_desc"]
                    raw = desc.encode("latin-1") if isinstance(desc, str) else bytes(desc)
                    ntype = note["n_type"] if isinstance(note["n_type"], int) else 1
                    out.append((note["n_name"], ntype, raw))
        return out


def _vmcoreinfo(path: Path) -> dict[str, str]:
    for name, _, desc in _notes(path):
        if name == "VMCOREINFO":
            text = desc.decode("ascii", errors="replace")
            return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    raise AssertionError("no VMCOREINFO note")


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_crash_gives_the_four_files(lab_crash: Callable[..., Path], kind: str, kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    for name in ("vmcore.elf", "vmcore.kdump", "console.log", "lab.json"):
        assert (out / name).stat().st_size > 0, name
    assert info["kind"] == kind and info["kaslr"] == kaslr and info["kernel"]["flavour"] == kernel
    assert info["crash_function"] == get_kind(kind).crash_function
    assert info["status_after_stop"] == "guest-panicked"
    # QEMU's kdump output is makedumpfile's flattened format.
    assert (out / "vmcore.kdump").read_bytes()[:16].rstrip(b"\0") == b"makedumpfile"


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_elf_dump_has_vmcoreinfo_and_one_prstatus_per_cpu(lab_crash: Callable[..., Path], kind: str,
                                                          kernel: str, kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    notes = _notes(out / "vmcore.elf")
    prstatus = [n for n in notes if n[0] == "CORE" and n[1] in (1, "NT_PRSTATUS")]
    assert len(prstatus) == info["smp"]
    vmcoreinfo = _vmcoreinfo(out / "vmcore.elf")
    assert vmcoreinfo["OSRELEASE"] == info["kernel"]["release"]
    offset = int(vmcoreinfo.get("KERNELOFFSET", "0"), 16)
    assert (offset != 0) == kaslr


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_console_shows_the_module_crash(lab_crash: Callable[..., Path], kernel: str) -> None:
    out = lab_crash("BUG", kernel, kernel == "6.1")
    console = (out / "console.log").read_text(errors="replace")
    assert re.search(r"RIP: 0010:kcrash_test_do_bug\+0x[0-9a-f]+/0x[0-9a-f]+ \[kcrash_test\]", console)
    assert "kcrash_test_level2+" in console and "kcrash_test_level1+" in console
    info = json.loads((out / "lab.json").read_text())
    assert info["panic_line"] == "Fatal exception"
    assert info["planted"]["planted_count_printed"] == 100


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_hung_task_names_both_deadlocked_threads(lab_crash: Callable[..., Path], kernel: str) -> None:
    console = (lab_crash("HUNG_ABBA", kernel) / "console.log").read_text(errors="replace")
    assert re.search(r"INFO: task kcrash_abba_a:\d+ blocked for more than \d+ seconds", console)
    assert re.search(r"INFO: task kcrash_abba_b:\d+ blocked for more than \d+ seconds", console)
    assert "kcrash_test_abba_lock" in console


def test_cli_crash_bug_612_kaslr(tmp_path: Path) -> None:
    """The issue's headline command, run fresh through the CLI."""
    from kcrash.cli import main

    out = tmp_path / "bug"
    assert main(["lab", "crash", "BUG", "--kernel", "6.12", "--kaslr", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["console.log", "lab.json", "vmcore.elf", "vmcore.kcrash",
                                                     "vmcore.kdump"]
    info = json.loads((out / "lab.json").read_text())
    assert info["crash_function"] == "kcrash_test_do_bug"
    assert info["kaslr"] is True and info["kernel"]["flavour"] == "6.12"
    assert int(_vmcoreinfo(out / "vmcore.elf")["KERNELOFFSET"], 16) != 0


def test_cli_kernels_lists_both_supported_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    from kcrash.cli import main

    assert main(["lab", "kernels", "--json"]) == 0
    rows = {row["flavour"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["6.1"]["package"] == "linux-image-6.1.0-56-amd64" and rows["6.1"]["version"] == "6.1.192-2"
    assert re.fullmatch(r"linux-image-6\.12\.\d+\+deb12-amd64", rows["6.12"]["package"])
    assert rows["6.12"]["release"] == rows["6.12"]["package"].removeprefix("linux-image-")
