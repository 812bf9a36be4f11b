"""``kcrash CMD /proc/kcore`` on a running kernel: a lab guest (booted with the kdump initramfs in its
KCORE mode, no crash) runs kcrash chrooted in the host tree on its own ``/proc/kcore`` for ``sys``,
``ps``, ``log``, ``mod`` and ``bt 1`` and writes what its own ``/proc`` says beside it; the host compares.
The kernel keeps running while kcrash reads it, so tasks that come and go (the kcrash process itself,
the shell's short-lived commands) are not compared; everything that lives through the run is.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

import kcrash
from kcrash.lab.kdump import build_kdump_initramfs, run_kcore_guest
from kcrash.lab.prepare import prepare_kernel

pytestmark = pytest.mark.lab


def _kcrash_source_digest() -> str:
    # The guest runs this checkout's kcrash: its answers are cached only for the code that gave them.
    src = Path(kcrash.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def kcore_run(kcrash_cache: Path) -> Path:
    """The guest's output directory (cached by kernel, initramfs content and kcrash's source)."""
    prepared = prepare_kernel(kcrash_cache, "6.12")
    initrd = build_kdump_initramfs(kcrash_cache, prepared.modules_root,
                                   prepared.module.path if prepared.module else None)
    key = f"{prepared.package.key}-{initrd.name.removesuffix('.cpio.gz')}-{_kcrash_source_digest()}"
    out = kcrash_cache / "kcore" / key
    if not (out / "kcore.status").exists():
        run_kcore_guest(kcrash_cache, prepared, out)
    return out


def _json(out: Path, cmd: str) -> Any:
    err = (out / f"kcore-{cmd}.err").read_text()
    text = (out / f"kcore-{cmd}.json").read_text()
    assert text.strip(), f"kcrash {cmd} /proc/kcore printed nothing: {err[-500:]}"
    return json.loads(text)


def test_sys_release_is_unames(kcore_run: Path) -> None:
    info = _json(kcore_run, "sys")
    assert info["release"] == (kcore_run / "uname.txt").read_text().strip()


def test_ps_has_every_long_lived_task_of_proc(kcore_run: Path) -> None:
    tasks = {t["pid"]: t["comm"] for t in _json(kcore_run, "ps")["tasks"]}
    text = (kcore_run / "proc-comm.txt").read_text(errors="replace")
    proc = [line.split(" ", 1) for line in text.splitlines()]
    # /proc was listed after kcrash ran: processes that were already there (kernel threads, init,
    # the planted sleeps) must all be in kcrash's list. /proc/PID/comm of a kernel thread is its full
    # name (a kworker's with its workqueue, proc_task_name()); task->comm is its first 15 bytes.
    lasting = {int(pid): comm for pid, comm in proc if comm in ("init", "sleep") or int(pid) < 60}
    assert len(lasting) >= 40
    assert set(lasting) <= set(tasks), sorted(set(lasting) - set(tasks))
    for pid, comm in lasting.items():
        assert "\ufffd" in comm or comm.startswith(tasks[pid]), (pid, comm, tasks[pid])


def test_sys_counts_the_cpus_the_kernel_brought_up(kcore_run: Path) -> None:
    # /proc/kcore saves no CPU (its one NT_PRSTATUS is zeros): the count is the kernel's online CPUs,
    # checked against the kernel's own boot line "smp: Brought up 1 node, 2 CPUs"
    texts = "\n".join(r["text"] for r in _json(kcore_run, "log"))
    brought_up = re.search(r"smp: Brought up \d+ nodes?, (\d+) CPUs?", texts)
    assert brought_up, "no 'smp: Brought up' line in the guest's log"
    assert _json(kcore_run, "sys")["cpus"] == int(brought_up.group(1))


def test_mod_equals_proc_modules(kcore_run: Path) -> None:
    names = {m["name"] for m in _json(kcore_run, "mod")}
    proc = {line.split()[0] for line in (kcore_run / "proc-modules.txt").read_text().splitlines()}
    assert "kcrash_test" in proc
    assert names == proc


def test_log_lines_are_dmesgs(kcore_run: Path) -> None:
    texts = [r["text"] for r in _json(kcore_run, "log")]
    dmesg = (kcore_run / "dmesg.txt").read_text(errors="replace")
    assert texts[0].startswith("Linux version")
    # every line of every record kcrash read is in dmesg (taken after kcrash, so it holds them all)
    lines = [line.strip() for t in texts for line in t.splitlines() if line.strip()]
    missing = [line for line in lines if line not in dmesg]
    assert not missing, missing[:5]
    assert len(lines) >= 0.95 * len([line for line in dmesg.splitlines() if line.strip()])


def test_bt_of_init_uses_its_saved_stack(kcore_run: Path) -> None:
    bt = _json(kcore_run, "bt")
    text = json.dumps(bt)
    assert '"pid": 1' in text or '"pid":1' in text
    # init (the /init shell) is asleep in wait4 (or on its way there): its saved stack unwinds into the
    # scheduler and down to the system call entry
    assert "__schedule" in text or "schedule" in text
    assert "entry_SYSCALL_64" in text
