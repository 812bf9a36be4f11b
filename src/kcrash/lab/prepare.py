"""
kcrash.lab.prepare
==================

Everything a lab guest needs before it boots, built once and cached: the kernel image package
unpacked, its headers, the test module built against them, and the initramfs.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kcrash.lab import debian
from kcrash.lab.initramfs import build_initramfs
from kcrash.lab.kmod import BuiltModule, build_module

__all__ = ["PreparedKernel", "cache_lock", "fetch_debuginfo", "prepare_kernel"]


@dataclass(frozen=True, slots=True)
class PreparedKernel:
    """A kernel ready to boot in the lab."""

    package: debian.KernelPackage
    vmlinuz: Path
    modules_root: Path
    module: BuiltModule
    initramfs: Path


@contextmanager
def cache_lock(cache: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``name`` in the cache, so concurrent kcrash processes (two labs, parallel
    test workers) never unpack or build into the same place at once."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare_kernel(cache: Path, flavour: str) -> PreparedKernel:
    """Fetch, unpack and build what booting ``flavour`` (``6.1`` or ``6.12``) needs."""
    pkg = debian.resolve_kernel(flavour)
    with cache_lock(cache, f"prepare-{pkg.key}"):
        return _prepare(cache, pkg)


def fetch_debuginfo(cache: Path, flavour: str) -> Path:
    """The ``-dbg`` vmlinux of ``flavour``, extracted once (under the same kind of lock)."""
    pkg = debian.resolve_kernel(flavour)
    with cache_lock(cache, f"debuginfo-{pkg.key}"):
        return debian.fetch_debuginfo(cache, pkg)


def _prepare(cache: Path, pkg: debian.KernelPackage) -> PreparedKernel:
    image = debian.fetch_image(cache, pkg)
    vmlinuz = image / "boot" / f"vmlinuz-{pkg.release}"
    modules_root = image / "lib" / "modules" / pkg.release
    headers = debian.fetch_headers(cache, pkg)
    module = build_module(cache, pkg.release, headers, vmlinuz)
    initramfs = build_initramfs(cache, modules_root, module.path)
    return PreparedKernel(pkg, vmlinuz, modules_root, module, initramfs)
