"""kcrash.lab.kdump's host side without booting: module order from .modinfo, the first kernel's command
line, the guest RAM floor, the capture kernel's status line, and the qemu crash keys left unchanged."""

from __future__ import annotations

from pathlib import Path

from kcrash.lab import kdump
from kcrash.lab.crash import CrashOptions
from kcrash.lab.kdump import KdumpRun, collect_status, guest_mem, kdump_cmdline, module_order


def _ko(root: Path, rel: str, depends: str) -> None:
    path = root / "kernel" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0")


def test_module_order_puts_dependencies_first(tmp_path: Path) -> None:
    _ko(tmp_path, "fs/9p/9p.ko", "netfs,9pnet")
    _ko(tmp_path, "net/9p/9pnet_virtio.ko", "9pnet,virtio_ring")
    _ko(tmp_path, "net/9p/9pnet.ko", "")
    _ko(tmp_path, "fs/netfs/netfs.ko", "")
    # virtio_ring and virtio_pci have no module file: built in, skipped
    assert module_order(tmp_path, ("virtio_pci", "9pnet_virtio", "9p")) == ["9pnet", "9pnet_virtio", "netfs", "9p"]


def test_cmdline_carries_crashkernel_and_host_paths() -> None:
    line = kdump_cmdline("console=ttyS0 kcrash_kind=BUG", Path("/k"), Path("/v"), Path("/i.cpio.gz"))
    words = line.split()
    assert words[:2] == ["console=ttyS0", "kcrash_kind=BUG"]
    assert f"crashkernel={kdump.CRASHKERNEL}" in words
    assert "kcrash_collect=collect,vmcore,-c,-d,31" in words
    assert "kcrash_makedumpfile=-c,-d,31" in words
    assert {"kcrash_kexec=/k", "kcrash_vmlinuz=/v", "kcrash_initrd=/i.cpio.gz"} <= set(words)


def test_guest_mem_has_a_floor() -> None:
    assert guest_mem(CrashOptions("BUG")) == kdump.KDUMP_MEM
    assert guest_mem(CrashOptions("BUG", mem="2G")) == "2G"


def test_collect_status() -> None:
    assert collect_status(KdumpRun("0 24.54 135.05", 1.0, "SHUTDOWN")) == {
        "rc": 0, "capture_uptime_start_s": 24.54, "capture_uptime_end_s": 135.05}
    assert collect_status(KdumpRun("", 1.0, "SHUTDOWN")) == {}
