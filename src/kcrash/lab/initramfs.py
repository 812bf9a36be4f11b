"""
kcrash.lab.initramfs
====================

Build the lab's busybox initramfs: ``/init`` (``init.sh``), a static busybox, and the modules
the guest loads (``qemu_fw_cfg`` so ``-device vmcoreinfo`` works, ``pvpanic`` so a panic freezes
the VM, and the test module). Packed as a gzip'd ``newc`` cpio (written here), cached by content hash.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kcrash.errors import LabError, LabToolMissingError

__all__ = ["GUEST_MODULES", "build_initramfs", "find_module", "init_script", "newc_archive"]

GUEST_MODULES = ("qemu_fw_cfg", "pvpanic", "pvpanic-mmio")
_BUSYBOX = Path("/bin/busybox")


def init_script() -> bytes:
    """The ``/init`` shell script (shipped as package data)."""
    return (resources.files("kcrash.lab") / "init.sh").read_bytes()


def find_module(modules_root: Path, name: str) -> Path:
    """Path of ``name.ko`` or ``name.ko.xz`` under an unpacked ``lib/modules/RELEASE``."""
    for pattern in (f"{name}.ko", f"{name}.ko.xz"):
        found = sorted(modules_root.rglob(pattern))
        if found:
            return found[0]
    raise LabError(f"module {name} not found under {modules_root}")


def _module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # Debian 6.12 ships .ko.xz (MODULE_COMPRESS_XZ); busybox insmod wants plain ELF.
    return lzma.decompress(data) if path.suffix == ".xz" else data


def _busybox() -> Path:
    if not _BUSYBOX.exists():
        raise LabToolMissingError("busybox (static)", "busybox-static")
    return _BUSYBOX


def _contents(modules_root: Path, test_module: Path) -> dict[str, bytes]:
    files = {"init": init_script(), "bin/busybox": _busybox().read_bytes()}
    for name in GUEST_MODULES:
        files[f"modules/{name}.ko"] = _module_bytes(find_module(modules_root, name))
    files["modules/kcrash_test.ko"] = test_module.read_bytes()
    return files


def build_initramfs(cache: Path, modules_root: Path, test_module: Path) -> Path:
    """Build (or reuse) the initramfs; returns the path of the ``.cpio.gz``."""
    files = _contents(modules_root, test_module)
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    out = cache / "initramfs" / f"{digest.hexdigest()[:16]}.cpio.gz"
    if not out.exists():
        _pack(files, out)
    return out


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _newc_header(ino: int, entry: _Entry) -> bytes:
    fields = (ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1],
              len(entry.name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def newc_archive(entries: list[_Entry]) -> bytes:
    """A ``newc`` cpio archive (the kernel's initramfs format) of ``entries`` plus the trailer."""
    out = []
    for ino, entry in enumerate([*entries, _Entry("TRAILER!!!", 0)], start=1):
        out.append(_pad4(_newc_header(ino, entry) + entry.name.encode() + b"\0"))
        out.append(_pad4(entry.data))
    return b"".join(out)


def _entries(files: dict[str, bytes]) -> list[_Entry]:
    # Written in Python rather than with cpio(1) so that /dev/console (a device node the kernel
    # needs to give /init a console) can be added without root privileges.
    entries = [_Entry(d, stat.S_IFDIR | 0o755) for d in ("bin", "dev", "modules", "proc", "sys", "tmp")]
    entries.append(_Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    for name, data in sorted(files.items()):
        perm = 0o755 if name in ("init", "bin/busybox") else 0o644
        entries.append(_Entry(name, stat.S_IFREG | perm, data))
    return entries


def _pack(files: dict[str, bytes], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    tmp.write_bytes(gzip.compress(newc_archive(_entries(files)), compresslevel=6, mtime=0))
    tmp.rename(out)
