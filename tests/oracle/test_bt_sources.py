"""``kcrash bt --debuginfo`` shows file:line for every kernel frame, as addr2line gives them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.dumps import open_dump
from support.jsonout import from_hex

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


def _addr2line(vmlinux: Path, addresses: list[int]) -> list[tuple[str, str]]:
    """Innermost (function, file:line) of each address, from binutils (one batched call)."""
    out = subprocess.run(["addr2line", "-f", "-e", str(vmlinux), *(f"{a:#x}" for a in addresses)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    return [(out[i], out[i + 1].split(" ")[0]) for i in range(0, len(out), 2)]


def test_bt_with_debuginfo_annotates_every_kernel_frame(
        lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = lab_crash("BUG", "6.1", True)
    info = json.loads((out / "lab.json").read_text())
    vmlinux = lab_vmlinux_dbg("6.1")
    debug_root = vmlinux.parents[4]  # the unpacked -dbg package: usr/lib/debug/boot/vmlinux-*
    args = ["bt", str(out / "vmcore.kdump"), "--debuginfo", str(debug_root), "--debuginfo", info["module"]["path"],
            "--json"]
    assert main(args) == 0
    frames = from_hex(json.loads(capsys.readouterr().out))[0]["trace"]["frames"]
    assert len(frames) >= 10
    for frame in frames:
        assert frame["source"], f"no source line for {frame['text']}"
        assert all(s["line"] > 0 and s["file"] != "??" for s in frame["source"]), frame
    # The innermost location of each vmlinux frame is what `addr2line -f` says for the same link-time
    # address (KASLR offset removed; return addresses looked up one byte back, as addr2line users do).
    vmcoreinfo = open_dump(out / "vmcore.kdump").vmcoreinfo_or_none()
    assert vmcoreinfo is not None and vmcoreinfo.kerneloffset
    offset = vmcoreinfo.kerneloffset
    kernel = [f for f in frames if f["module"] is None]
    lookups = [f["pc"] - offset - (1 if f["kind"] in ("call", "scan") else 0) for f in kernel]
    expected = _addr2line(vmlinux, lookups)
    for frame, (function, where) in zip(kernel, expected, strict=True):
        innermost = frame["source"][0]
        assert (innermost["function"], f"{innermost['file']}:{innermost['line']}") == (function, where), frame["text"]
