"""Oracle for issue 22's one crash-time rule: ``kcrash dump info`` and ``kcrash sys`` (dumps opened
with NO vmlinux) give the same crash time for the ELF and the kdump file of a lab crash, and, as QEMU's
dumps carry no VMCOREINFO ``CRASHTIME``, it is the timekeeper's ``xtime_sec`` that drgn 0.3.0 reads
with the Debian -dbg vmlinux (``tk_core.timekeeper.xtime_sec``). Before, ``dump info`` said "-"."""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from kcrash.dumps import open_dump
from support.drgn_oracle import KDUMP_CASES, case_id, drgn_program
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False)]


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(list(args)) == 0
    data: dict[str, object] = from_hex(json.loads(capsys.readouterr().out))
    return data


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES)
def test_dump_info_and_sys_give_drgns_xtime_sec(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                                capsys: pytest.CaptureFixture[str], kind: str, kernel: str,
                                                kaslr: bool) -> None:
    out = lab_crash(kind, kernel, kaslr)
    dprog = drgn.Program()
    dprog.set_core_dump(str(out / "vmcore.elf"))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        dprog.load_debug_info([str(lab_vmlinux_dbg(kernel))])
    expected = dprog["tk_core"].timekeeper.xtime_sec.value_()
    dump = open_dump([str(out / "vmcore.elf")])
    try:
        info = dump.vmcoreinfo_or_none()
    finally:
        dump.close()
    assert info is not None and not info.crashtime  # so the timekeeper is the answer
    for name in ("vmcore.elf", "vmcore.kdump"):
        path = str(out / name)
        assert _json(capsys, "dump", "info", path, "--json")["crash_time"] == expected
        assert _json(capsys, "sys", path, "--json")["crash_time"] == expected
        assert main(["dump", "info", path]) == 0
        date = datetime.datetime.fromtimestamp(expected, datetime.UTC).strftime("%a %b %e %H:%M:%S UTC %Y")
        assert f"crash time: {date} ({expected})" in capsys.readouterr().out


@pytest.mark.parametrize("case", KDUMP_CASES, ids=case_id)
def test_kdump_crash_time_is_vmcoreinfos_crashtime(case: tuple[Any, ...], lab_case: Callable[..., Path],
                                                    lab_vmlinux_dbg: Callable[[str], Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # /proc/vmcore's VMCOREINFO carries CRASHTIME (crash_save_vmcoreinfo()); drgn reads the note as
    # its VMCOREINFO object, and the timekeeper it reads stopped in the same second
    out = lab_case(case)
    dprog = drgn_program(out, lab_vmlinux_dbg(case[1]))
    note = dprog["VMCOREINFO"].string_().decode()
    crashtime = int(next(line for line in note.splitlines() if line.startswith("CRASHTIME="))[len("CRASHTIME="):])
    assert abs(crashtime - dprog["tk_core"].timekeeper.xtime_sec.value_()) <= 1
    path = str(out / "vmcore.elf")
    assert _json(capsys, "dump", "info", path, "--json")["crash_time"] == crashtime
    assert _json(capsys, "sys", path, "--json")["crash_time"] == crashtime
