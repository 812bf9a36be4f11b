"""Choosing the compiler the lab module is built with (no build)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kcrash.errors import KernelPackageError
from kcrash.lab import kmod


def _headers(tmp_path: Path, cc_line: str) -> Path:
    (tmp_path / ".kernelvariables").write_text(f"override ARCH = x86\nCCACHE = ccache\n{cc_line}\n")
    return tmp_path


def test_a_missing_kernel_compiler_is_replaced_by_the_hosts(tmp_path: Path) -> None:
    line = "CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-99"
    assert kmod.compiler_override(_headers(tmp_path, line)) == ["CC=gcc-12"]


@pytest.mark.skipif(shutil.which("gcc-12") is None, reason="needs gcc-12 installed")
def test_an_installed_kernel_compiler_is_kept(tmp_path: Path) -> None:
    line = "CC = $(if $(DEBIAN_KERNEL_USE_CCACHE),$(CCACHE)) $(CROSS_COMPILE)gcc-12"
    assert kmod.compiler_override(_headers(tmp_path, line)) == []


def test_headers_without_kernelvariables_are_left_alone(tmp_path: Path) -> None:
    assert kmod.compiler_override(tmp_path) == []


def test_arm64_is_cross_built() -> None:
    assert kmod.cross_args("arm64") == ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"]
    assert kmod.cross_args("x86_64") == []


def test_an_arm64_image_without_elf_builds_without_btf_base(tmp_path: Path) -> None:
    image = tmp_path / "vmlinuz"
    image.write_bytes(b"MZ" + b"\0" * 54 + b"ARM\x64" + b"\0" * 64)  # an arm64 Image: no compressed ELF inside
    kmod._ensure_btf_base(tmp_path, image, "arm64")
    assert not (tmp_path / "vmlinux").exists()
    with pytest.raises(KernelPackageError):
        kmod._ensure_btf_base(tmp_path, image, "x86_64")
