"""
kcrash.lab.initramfs
====================

Build the lab's busybox initramfs: ``/init`` (``init.sh``), a static busybox, and the modules
the guest loads (``qemu_fw_cfg`` so ``-device vmcoreinfo`` works, ``pvpanic`` so a panic freezes
the VM, and the test module where it can be built). Modules are found wherever the unpacked tree
keeps them and unpacked from whatever compression the kernel's packaging uses (none, xz, zstd, gzip).
Packed as a gzip'd ``newc`` cpio (written here), cached by content hash.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import stat
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import zstandard

from kcrash.errors import LabError, LabToolMissingError

__all__ = ["GUEST_MODULES", "build_initramfs", "cached_archive", "find_module", "init_script", "newc_archive"]

GUEST_MODULES = ("qemu_fw_cfg", "pvpanic", "pvpanic-mmio")
# Kernels before the 2021 pvpanic split (5.10) have one pvpanic.ko (drivers/misc/pvpanic.ko) that
# drives QEMU's ISA device itself; later ones need pvpanic-mmio.ko (drivers/misc/pvpanic/) for it.
_OPTIONAL_MODULES = frozenset({"pvpanic-mmio"})
_BUSYBOX = Path("/bin/busybox")


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


# Module file suffixes in the order tried, with how to get the plain ELF back (busybox insmod
# wants plain ELF): MODULE_COMPRESS_NONE, _XZ (Debian 6.12), _ZSTD, _GZIP.
_MODULE_SUFFIXES: dict[str, Callable[[bytes], bytes]] = {
    ".ko": lambda data: data, ".ko.xz": lzma.decompress, ".ko.zst": _zstd, ".ko.gz": gzip.decompress,
}


def init_script() -> bytes:
    """The ``/init`` shell script (shipped as package data)."""
    return (resources.files("kcrash.lab") / "init.sh").read_bytes()


def find_module(modules_root: Path, name: str) -> Path:
    """Path of ``name.ko`` (or ``.ko.xz``, ``.ko.zst``, ``.ko.gz``) anywhere under an unpacked
    ``lib/modules/RELEASE``."""
    for suffix in _MODULE_SUFFIXES:
        found = sorted(modules_root.rglob(f"{name}{suffix}"))
        if found:
            return found[0]
    raise LabError(f"module {name} not found under {modules_root}")


def _module_bytes(path: Path) -> bytes:
    for suffix, decompress in _MODULE_SUFFIXES.items():
        if path.name.endswith(suffix) and suffix != ".ko":
            return decompress(path.read_bytes())
    return path.read_bytes()


def _busybox() -> Path:
    if not _BUSYBOX.exists():
        raise LabToolMissingError("busybox (static)", "busybox-static")
    return _BUSYBOX


def _contents(modules_root: Path, test_module: Path | None, busybox: Path | None = None,
              modules: tuple[str, ...] = GUEST_MODULES) -> dict[str, bytes]:
    files = {"init": init_script(), "bin/busybox": (busybox or _busybox()).read_bytes()}
    for name in modules:
        try:
            files[f"modules/{name}.ko"] = _module_bytes(find_module(modules_root, name))
        except LabError:
            if name not in _OPTIONAL_MODULES:
                raise
    if test_module is not None:
        files["modules/kcrash_test.ko"] = test_module.read_bytes()
    return files


def build_initramfs(cache: Path, modules_root: Path, test_module: Path | None, busybox: Path | None = None,
                    modules: tuple[str, ...] = GUEST_MODULES) -> Path:
    """Build (or reuse) the initramfs; returns the path of the ``.cpio.gz``. Without a
    ``test_module`` the guest boots without it (only kinds that need no module work there).
    ``busybox`` (default ``/bin/busybox``) and ``modules`` are given for a foreign architecture:
    arm64 guests get Debian's arm64 static busybox and only ``qemu_fw_cfg`` (Debian's arm64 kernels
    have no pvpanic; ``init.sh`` logs the failed insmod and goes on)."""
    return cached_archive(cache, _contents(modules_root, test_module, busybox, modules))


def cached_archive(cache: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    """Pack ``files`` into ``cache/initramfs/PREFIXHASH.cpio.gz`` unless it is there already; HASH is
    of the names and contents, so an unchanged initramfs keeps its name (and the crashes cached on it)."""
    digest = hashlib.sha256()
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    out = cache / "initramfs" / f"{prefix}{digest.hexdigest()[:16]}.cpio.gz"
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
