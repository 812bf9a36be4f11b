"""Oracle: on the same paused lab VM (KASLR on), kcrash's live task list equals drgn's ``--qemu`` one.

kcrash reads the guest through the gdbstub (kallsyms + BTF from guest memory); drgn through QMP
(``Program.set_qemu_qmp``, what ``drgn --qemu SOCK`` calls) with the Debian ``-dbg`` vmlinux. The VM
stays stopped by kcrash's gdb connection while drgn reads it, so both see the same instant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.analysis.live import attach_kernel, list_tasks
from support.live_guest import boot_live_guest

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.pid import for_each_task  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_live_ps_equals_drgn_qemu(kernel: str, tmp_path: Path, lab_vmlinux_dbg: Callable[[str], Path]) -> None:
    vmlinux = lab_vmlinux_dbg(kernel)
    sock = tmp_path / "qmp.sock"
    with boot_live_guest(kernel, sock, 600) as (target, _), attach_kernel(target, qmp=str(sock)) as session:
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
