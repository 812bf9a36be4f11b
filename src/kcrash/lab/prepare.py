"""
kcrash.lab.prepare
==================

Everything a lab guest needs before it boots, built once and cached: the kernel image package
unpacked, its headers, the test module built against them (for kernels whose flavour can build it),
and the initramfs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kcrash.lab import debian
from kcrash.lab.arches import HOST_ARCH, get_arch
from kcrash.lab.initramfs import build_initramfs
from kcrash.lab.kmod import BuiltModule, build_module
from kcrash.lab.locks import cache_lock

__all__ = ["PreparedKernel", "cache_lock", "fetch_debuginfo", "prepare_kernel"]


@dataclass(frozen=True, slots=True)
class PreparedKernel:
    """A kernel ready to boot in the lab; ``module`` is None where the test module cannot be built
    (see :attr:`kcrash.lab.debian.Flavour.test_module`)."""

    package: debian.KernelPackage
    vmlinuz: Path
    modules_root: Path
    module: BuiltModule | None
    initramfs: Path


def prepare_kernel(cache: Path, flavour: str, arch: str = "x86_64") -> PreparedKernel:
    """Fetch, unpack and build what booting ``flavour`` (``5.10``, ``6.1``, ``6.12``, ``7``) of
    ``arch`` (``x86_64``, ``arm64``) needs."""
    pkg = debian.resolve_kernel(flavour, cache, arch)
    with cache_lock(cache, f"prepare-{pkg.key}"):
        return _prepare(cache, pkg)


def fetch_debuginfo(cache: Path, flavour: str, arch: str = "x86_64") -> Path:
    """The ``-dbg`` vmlinux of ``flavour`` (of ``arch``), extracted once (under the same kind of lock)."""
    pkg = debian.resolve_kernel(flavour, cache, arch)
    with cache_lock(cache, f"debuginfo-{pkg.key}"):
        return debian.fetch_debuginfo(cache, pkg)


def _prepare(cache: Path, pkg: debian.KernelPackage) -> PreparedKernel:
    image = debian.fetch_image(cache, pkg)
    module = None
    if debian.get_flavour(pkg.flavour).test_module:
        headers = debian.fetch_headers(cache, pkg)
        module = build_module(cache, pkg.release, headers, image.vmlinuz, pkg.arch)
    if pkg.arch == HOST_ARCH:
        initramfs = build_initramfs(cache, image.modules_root, module.path if module else None)
    else:
        initramfs = build_initramfs(cache, image.modules_root, module.path if module else None,
                                    debian.fetch_busybox(cache, pkg.arch), get_arch(pkg.arch).guest_modules)
    return PreparedKernel(pkg, image.vmlinuz, image.modules_root, module, initramfs)
