"""Oracle: on the same paused lab VM (KASLR on), kcrash's live task list equals drgn's ``--qemu`` one.

kcrash reads the guest through the gdbstub (kallsyms + BTF from guest memory); drgn through QMP
(``Program.set_qemu_qmp``, what ``drgn --qemu SOCK`` calls) with the Debian ``-dbg`` vmlinux. The VM
stays stopped by kcrash's gdb connection while drgn reads it, so both see the same instant.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kcrash.analysis.live import attach_kernel, list_tasks

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.pid import for_each_task  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


@contextlib.contextmanager
def live_guest(kernel: str, sock: Path) -> Iterator[str]:
    cmd = [sys.executable, "-m", "kcrash", "lab", "boot", "--kernel", kernel, "--kaslr", "--gdb", "0",
           "--qmp", str(sock), "--duration", "600"]
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
            port = m.group(1) if m else None
        assert port is not None, "the live guest did not come up"
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_live_ps_equals_drgn_qemu(kernel: str, tmp_path: Path, lab_vmlinux_dbg: Callable[[str], Path]) -> None:
    vmlinux = lab_vmlinux_dbg(kernel)
    sock = tmp_path / "qmp.sock"
    with live_guest(kernel, sock) as target, attach_kernel(target, qmp=str(sock)) as session:
        ours = {(int(t.pid), t.comm.string_().decode("utf-8", "replace")) for t in list_tasks(session.binder.prog)}
        assert session.qmp is not None
        session.qmp.close()  # QEMU serves one QMP client at a time: hand the socket to drgn
        session.qmp = None
        prog = drgn.Program()
        prog.set_qemu_qmp(str(sock))
        with contextlib.suppress(drgn.MissingDebugInfoError):
            prog.load_debug_info([str(vmlinux)])
        theirs = {(t.pid.value_(), t.comm.string_().decode("utf-8", "replace")) for t in for_each_task(prog)}
    assert len(ours) > 50
    assert ours == theirs
