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


def test_a_vmlinux_of_another_build_is_refused_by_the_log_banner(module: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # A vmlinux stand-in whose linux_banner is the 6.1.192-2 package's; the log is 6.1.191-1's, same
    # release (Debian keeps 6.1.0-56-amd64 across package versions). Its frames are the module's.
    banner = ("Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP PREEMPT_DYNAMIC "
              "Debian 6.1.192-2 (2026-11-30)")
    stand_in = f'const char linux_banner[] = "{banner}\\n";\nint start_kernel(void) {{ return 0; }}\n'
    (tmp_path / "v.c").write_text(stand_in)
    subprocess.run(["gcc", "-g", "-c", "-o", "vmlinux", "v.c"], cwd=tmp_path, check=True)
    log = tmp_path / "console.log"
    old = banner.replace("6.1.192-2 (2026-11-30)", "6.1.191-1 (2026-10-02)")
    log.write_text(f"[    0.0] {old}\n" + LOG.format(size=0x10))
    args = ["decode", str(log), "--debuginfo", str(tmp_path / "vmlinux"), "--debuginfo", str(module), "--no-cache"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("kcrash: error:") and "another kernel build" in err and err.count("\n") == 1
    assert "Debian 6.1.191-1" in err and "Debian 6.1.192-2" in err
    assert main([*args, "--force"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("kcrash: warning:") and "used anyway (--force)" in err and err.count("\n") == 1
    log.write_text(f"[    0.0] {banner}\n" + LOG.format(size=0x10))
    assert main(args) == 0 and capsys.readouterr().err == ""
