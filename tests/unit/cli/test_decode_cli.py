"""kcrash decode: annotated lines, JSON, refusing another build, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.cli import main

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
SOURCE = """
__attribute__((noinline)) int crash_here(volatile int *p) { return *p + 1; }
__attribute__((noinline)) int caller(volatile int *p) { return crash_here(p) * 3 + *p; }
"""
LOG = """[    1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000
[    1.0] CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1
[    1.0] RIP: 0010:crash_here+0x2/0x{size:x} [m]
[    1.0] Code: 90 90 90 90 <8b> 07 83 c0 01 c3
[    1.0] Call Trace:
[    1.0]  <TASK>
[    1.0]  caller+0x4/0x10 [m]
[    1.0]  </TASK>
"""


@pytest.fixture()
def module(tmp_path: Path) -> Path:
    (tmp_path / "m.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-c", "-o", "m.ko", "m.c"], cwd=tmp_path, check=True)
    return tmp_path / "m.ko"


def test_annotates_frames_and_marks_the_faulting_instruction(module: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "console.log"
    log.write_text(LOG.format(size=0x10))
    assert main(["decode", str(log), "--debuginfo", str(module), "--no-cache", "--att"]) == 0
    out = capsys.readouterr().out
    assert "crash_here+0x2/0x10 [m] (" in out and "m.c:2)" in out
    assert "<-- trapping instruction" in out and "movl (%rdi), %eax" in out
    assert main(["decode", str(log), "--debuginfo", str(module), "--no-cache", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"]["caller+0x4/0x10"]["locations"][0]["function"] == "caller"


def test_debug_file_of_another_build_is_refused(module: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "console.log"
    log.write_text(LOG.format(size=0x40).replace("caller+0x4/0x10", "caller+0x4/0x80"))
    assert main(["decode", str(log), "--debuginfo", str(module), "--no-cache"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kcrash: error: the debug files are of another kernel build") and err.count("\n") == 1
    assert main(["decode", str(log), "--debuginfo", str(module), "--no-cache", "--force"]) == 0


def test_log_without_trace_and_missing_debuginfo(module: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text("[    0.0] Linux version 6.1.0\n[    0.1] booted\n")
    assert main(["decode", str(quiet), "--debuginfo", str(module)]) == 1
    assert "no kernel call trace" in capsys.readouterr().err
    log = tmp_path / "console.log"
    log.write_text(LOG.format(size=0x10))
    assert main(["decode", str(log), "--debuginfo", str(tmp_path / "m.c")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kcrash: error:") and err.count("\n") == 1
