"""``kcrash collect qemu`` on real lab guests: a panicked VM (the lab's own run writes
``vmcore.kcrash`` beside QEMU's dumps) and a live one (``--resume`` keeps it running,
``--keep-stopped`` does not). The collected dumps hold the same pages, registers and log as QEMU's
ELF dump of the same moment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kcrash.dumps import cpu_states, open_dump
from kcrash.helpers.linux.printk import format_dmesg, get_printk_records
from kcrash.lab.boot import BootOptions, LiveGuest, boot_live
from kcrash.lab.crash import CrashOptions, run_crash
from kcrash.memory import open_kernel_memory
from support.jsonout import assert_json_output

pytestmark = pytest.mark.lab


def _dmesg(path: Path) -> str:
    dump = open_dump(path)
    try:
        return format_dmesg(get_printk_records(open_kernel_memory(dump), dump.vmcoreinfo_or_none()))  # type: ignore[arg-type]
    finally:
        dump.close()


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_panicked_vm_collection_matches_qemu_dump(kcrash_cache: Path, tmp_path: Path, kernel: str) -> None:
    info = run_crash(kcrash_cache, CrashOptions("sysrq", kernel), tmp_path)
    col = info["collector"]
    assert col["file"] == "vmcore.kcrash" and col["vmcoreinfo"] and not col["incomplete"]
    assert col["excluded"]["free"] > 1000 and json.loads((tmp_path / "lab.json").read_text())["collector"] == col
    ours, qemu = open_dump(tmp_path / "vmcore.kcrash"), open_dump(tmp_path / "vmcore.elf")
    assert ours.describe().dump_level == 31
    assert _dmesg(tmp_path / "vmcore.kcrash") == _dmesg(tmp_path / "vmcore.elf")
    for a, b in zip(cpu_states(ours.notes()), cpu_states(qemu.notes()), strict=True):
        assert a.prstatus is not None and b.prstatus is not None and b.qemu is not None and a.qemu is not None
        for reg in ("rip", "rsp", "rbp", "rax", "rbx", "r12", "r15", "eflags"):
            assert a.prstatus.registers[reg] == b.prstatus.registers[reg], reg
        assert a.qemu.cr3 == b.qemu.cr3 and a.qemu.segment_bases["gs"] == b.qemu.segment_bases["gs"]
    qread = qemu.segments()[0].read_fn
    compared = 0
    for start, end in ours.ram_runs():  # type: ignore[attr-defined]
        for pfn in range(start, end):
            try:
                page = ours.read_page(pfn)  # type: ignore[attr-defined]
            except Exception:
                continue
            assert page == qread(pfn * 4096, 4096), pfn
            compared += 1
    assert compared == ours.describe().pages.present
    ours.close()
    qemu.close()


def _qmp(sock: Path, *commands: str) -> list[Any]:
    from qemu.qmp import QMPClient

    async def run() -> list[Any]:
        client = QMPClient("test")
        await client.connect(str(sock))
        try:
            return [await client.execute(c) for c in commands]
        finally:
            await client.disconnect()

    return asyncio.run(run())


def test_live_vm_collection_resumes(kcrash_cache: Path, tmp_path: Path) -> None:
    sock = tmp_path / "qmp.sock"
    results: dict[str, Any] = {}

    def work(guest: LiveGuest) -> None:
        try:
            for mode in ("--resume", "--keep-stopped"):
                out = tmp_path / f"live{mode}.kdump"
                run = subprocess.run([sys.executable, "-m", "kcrash", "collect", "qemu", "--qmp", str(sock), "-o",
                                      str(out), "-c", "lzo", "--json", mode], capture_output=True, text=True,
                                     timeout=120)
                results[mode] = (run.returncode, run.stdout, run.stderr, _qmp(sock, "query-status")[0])
                if mode == "--keep-stopped":
                    _qmp(sock, "cont")
            results["ram_file"] = guest.ram_file
        finally:
            done.set()

    done = threading.Event()
    boot_live(kcrash_cache, BootOptions(kernel="6.1", gdb_port=None, qmp_socket=sock),
              lambda g: threading.Thread(target=work, args=(g,), daemon=True).start(), stop_after=45)
    assert done.is_set()
    code, out, err, status = results["--resume"]
    assert code == 0, err
    data = json.loads(out)
    assert_json_output("collect-qemu", data)  # the shipped schema; no integer reaches 2^53
    assert data["status_before"] == "running" and data["resumed"] and data["vmcoreinfo"]
    assert status["status"] == "running"
    code, out, err, status = results["--keep-stopped"]
    assert code == 0 and status["status"] == "paused" and not json.loads(out)["resumed"]
    assert_json_output("collect-qemu", json.loads(out))
    text = _dmesg(tmp_path / "live--resume.kdump")
    assert "kcrash_test: planted 100 objects" in text
    assert not Path(results["ram_file"]).exists()  # the lab removes the RAM file with the VM
