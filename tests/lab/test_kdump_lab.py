"""The kdump path of the lab (``kcrash lab crash KIND --via kdump``): the guest kexecs into a capture
kernel that runs ``kcrash collect vmcore -c -d 31 /proc/vmcore OUT`` (kdump-tools' default
MAKEDUMP_ARGS) chrooted in the host tree over 9p, and, beside it, makedumpfile with the same
arguments. kcrash reads its own dump with no vmlinux; drgn 0.3.0 (the oracle, with the Debian -dbg
vmlinux) reads the same file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.lab.crash import CrashOptions, crash_key
from kcrash.lab.kdump import COLLECT_ARGS, MAKEDUMPFILE_FILE
from kcrash.lab.prepare import prepare_kernel

pytestmark = pytest.mark.lab

CASES = [("BUG", "6.12"), ("BUG", "6.1"), ("SYSRQ", "6.12")]


def _info(out: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads((out / "lab.json").read_text())
    return info


def test_kdump_key_differs_and_qemu_key_is_unchanged(kcrash_cache: Path) -> None:
    prepared = prepare_kernel(kcrash_cache, "6.12")
    qemu = crash_key(prepared, CrashOptions("BUG", "6.12"))
    assert crash_key(prepared, CrashOptions("BUG", "6.12", via="qemu")) == qemu
    assert crash_key(prepared, CrashOptions("BUG", "6.12", via="kdump")) != qemu
    # the cached qemu crash the oracle tests use is still found under its old key
    assert (kcrash_cache / "crashes" / qemu / "lab.json").exists()


@pytest.mark.parametrize(("kind", "kernel"), CASES)
def test_capture_kernel_ran_the_collector(kdump_crash: Callable[[str, str], Path], kind: str, kernel: str) -> None:
    out = kdump_crash(kind, kernel)
    info = _info(out)
    assert info["via"] == "kdump"
    assert info["kdump"]["collector_args"] == list(COLLECT_ARGS)
    assert info["kdump"]["capture_status"]["rc"] == 0
    console = (out / "console.log").read_text(errors="replace")
    # two kernels booted: the crashed one (with crashkernel=) and the capture kernel (elfcorehdr=)
    assert console.count("Linux version") == 2
    assert "crashkernel=" in console and "elfcorehdr=" in console
    assert "kcrash collect vmcore Completed." in (out / "collect.log").read_text()
    assert (out / "vmcore.kcrash").read_bytes()[:8] == b"KDUMP   "
    if info["kdump"]["makedumpfile_file"]:
        assert (out / MAKEDUMPFILE_FILE).read_bytes()[:8] == b"KDUMP   "
