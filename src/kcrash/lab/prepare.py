"""
kcrash.lab.prepare
==================

Everything a lab guest needs before it boots, built once and cached: the kernel image package
unpacked, its headers, the test module built against them, and the initramfs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kcrash.lab import debian
from kcrash.lab.initramfs import build_initramfs
from kcrash.lab.kmod import BuiltModule, build_module

__all__ = ["PreparedKernel", "prepare_kernel"]


@dataclass(frozen=True, slots=True)
class PreparedKernel:
    """A kernel ready to boot in the lab."""

    package: debian.KernelPackage
    vmlinuz: Path
    modules_root: Path
    module: BuiltModule
    initramfs: Path


def prepare_kernel(cache: Path, flavour: str) -> PreparedKernel:
    """Fetch, unpack and build what booting ``flavour`` (``6.1`` or ``6.12``) needs."""
    pkg = debian.resolve_kernel(flavour)
    image = debian.fetch_image(cache, pkg)
    vmlinuz = image / "boot" / f"vmlinuz-{pkg.release}"
    modules_root = image / "lib" / "modules" / pkg.release
    headers = debian.fetch_headers(cache, pkg)
    module = build_module(cache, pkg.release, headers, vmlinuz)
    initramfs = build_initramfs(cache, modules_root, module.path)
    return PreparedKernel(pkg, vmlinuz, modules_root, module, initramfs)
