"""Choosing the compiler the lab module is built with (no build)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
