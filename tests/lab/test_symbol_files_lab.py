"""Symbols from a System.map or the -dbg vmlinux when the dump's own kallsyms cannot be read (issue #15):
kcrash's kdump file of a KASLR crash with the pages of ``kallsyms_names`` damaged (they read as missing,
as filtered pages do). Without a symbol file the analysis commands say so in one line (the report is the
bare one); with ``--system-map`` (made from the -dbg vmlinux by binutils' ``nm -n``, as the kernel build
makes System.map) or ``--vmlinux`` they give what they give on the whole dump."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.dumps import open_dump
from kcrash.memory import open_kernel_memory
from support.jsonout import from_hex

pytestmark = [pytest.mark.lab, pytest.mark.oracle,
              pytest.mark.skipif(shutil.which("nm") is None, reason="binutils' nm is not installed")]

PAGE = 4096


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def damaged(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    """(whole dump, dump with kallsyms_names unreadable, System.map, vmlinux) of a KASLR 6.12 BUG crash."""
    whole = lab_crash("BUG", "6.12", True) / "vmcore.kcrash"
    vmlinux = lab_vmlinux_dbg("6.12")
    tmp = tmp_path_factory.mktemp("symbols")
    system_map = tmp / "System.map"
    with system_map.open("w") as out:
        subprocess.run(["nm", "-n", str(vmlinux)], stdout=out, check=True)
    dump = open_dump(whole)
    info = dump.vmcoreinfo_or_none()
    assert info is not None
    mem = open_kernel_memory(dump)
    names = info.get_symbol("kallsyms_names")
    data = bytearray(whole.read_bytes())
    for page in range(names & ~(PAGE - 1), names + 64 * PAGE, PAGE):  # the first 256 KiB of the names
        desc = dump._desc(dump._bm2.rank(mem.translate(page) // PAGE) - dump._rank_base)  # type: ignore[attr-defined]
        assert desc is not None
        offset, size, _ = desc
        data[offset:offset + size] = bytes(size) if size != PAGE else data[offset:offset + size]
        if size == PAGE:  # stored raw: make its descriptor invalid instead (a damaged page all the same)
            where = dump.header.page_desc_offset + 24 * (dump._bm2.rank(mem.translate(page) // PAGE)  # type: ignore[attr-defined]
                                                         - dump._rank_base)  # type: ignore[attr-defined]
            data[where + 8:where + 12] = (PAGE + 1).to_bytes(4, "little")
    dump.close()
    cut = tmp / "vmcore.kcrash"
    cut.write_bytes(data)
    return whole, cut, system_map, vmlinux


def test_without_symbols_the_commands_say_why(damaged: tuple[Path, Path, Path, Path],
                                              capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    monkeypatch.setenv("KCRASH_DEBUGINFO_PATH", str(tmp_path))  # nothing to find there
    _, cut, _, _ = damaged
    code, out, err = _run(capsys, "ps", cut)
    assert code == 1 and out == "" and "give --system-map or --vmlinux" in err.splitlines()[-1]
    code, out, _ = _run(capsys, "report", cut, "--json")
    assert code == 0 and from_hex(json.loads(out))["unavailable"]
    assert _run(capsys, "log", cut)[0] == 0  # the log needs VMCOREINFO only


@pytest.mark.parametrize("option", ["--system-map", "--vmlinux"])
def test_a_symbol_file_stands_in_for_kallsyms(damaged: tuple[Path, Path, Path, Path], option: str,
                                              capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    whole, cut, system_map, vmlinux = damaged
    given = system_map if option == "--system-map" else vmlinux
    for command in (["ps"], ["bt", "-a"], ["mod"], ["sym", "panic", "init_task", "schedule+0x10"], ["sys"],
                    ["struct", "task_struct"], ["p", "init_uts_ns.name.release"]):
        code, out, err = _run(capsys, command[0], cut, *command[1:], option, given, "--json")
        assert code == 0, err
        got = from_hex(json.loads(out))
        want = from_hex(json.loads(_run(capsys, command[0], whole, *command[1:], "--json")[1]))
        if command[0] == "sys":  # the file names differ
            got.pop("dump"), want.pop("dump")
        if command[0] == "mod":  # kallsyms gives module symbols as well; only the module list is compared
            got, want = [m["name"] for m in got], [m["name"] for m in want]
        assert got == want, command
    code, out, err = _run(capsys, "report", cut, option, given, "--json")
    report = from_hex(json.loads(out))
    lab = json.loads((whole.parent / "lab.json").read_text())
    assert code == 0 and report["verdict"]["crashing_function"] == lab["crash_function"]
    assert report["backtrace"]["truncated"] is None
