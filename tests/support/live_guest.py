"""A live (not crashed) lab guest for the live-debugging tests: ``kcrash lab boot`` with a gdbstub and QMP."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def boot_live_guest(kernel: str, sock: Path, duration: int) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Boot ``kernel`` with KASLR, the gdbstub on a free port and QMP on ``sock``; yield the gdb target
    (``127.0.0.1:PORT``) and the ``kcrash lab boot`` process, which is stopped on exit if still running."""
    cmd = [sys.executable, "-m", "kcrash", "lab", "boot", "--kernel", kernel, "--kaslr", "--gdb", "0",
           "--qmp", str(sock), "--duration", str(duration)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    try:
        port = None
        deadline = time.monotonic() + 300
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"target remote 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        if port is None:
            proc.kill()
            pytest.fail(f"the live guest did not come up: {proc.stdout.read()}")
        yield f"127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
