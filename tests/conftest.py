"""Shared pytest fixtures: the crash lab's real dumps, produced once and cached by content."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from kcrash.lab.crash import CrashOptions, cached_crash
from kcrash.lab.prepare import fetch_debuginfo

# Property tests: `make test` runs them derandomized (the same examples on every run, so a green CI
# run says something about the next); `make fuzz` runs them with fresh random seeds (profile "fuzz").
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("fuzz", database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("KCRASH_HYPOTHESIS_PROFILE", "ci"))

# A hang fails one test, in minutes: the default per-test limit is pyproject.toml's `timeout`;
# tests that boot kernels (and on a cold cache download and unpack them first) get this one.
LAB_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give lab and oracle tests without their own time limit :data:`LAB_TIMEOUT` seconds."""
    for item in items:
        if item.get_closest_marker("timeout") is None and (
                item.get_closest_marker("lab") or item.get_closest_marker("oracle")):
            item.add_marker(pytest.mark.timeout(LAB_TIMEOUT))


@pytest.fixture(scope="session")
def kcrash_cache() -> Path:
    """The kcrash cache directory (``$KCRASH_CACHE`` or ``~/.cache/kcrash``)."""
    env = os.environ.get("KCRASH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kcrash"


@pytest.fixture(scope="session")
def lab_crash(kcrash_cache: Path) -> Callable[..., Path]:
    """Factory: ``lab_crash(kind="sysrq", kernel="6.1", kaslr=False, arch="x86_64")`` -> crash directory.

    The directory holds ``vmcore.elf``, ``vmcore.kdump``, ``console.log`` and ``lab.json``. A crash
    is produced on first use and reused from the cache afterwards. ``arch="arm64"`` crashes Debian's
    arm64 kernel under qemu-system-aarch64 (no ``vmcore.kcrash`` there).
    """

    @functools.cache
    def make(kind: str = "sysrq", kernel: str = "6.1", kaslr: bool = False, arch: str = "x86_64") -> Path:
        return cached_crash(kcrash_cache, CrashOptions(kind, kernel, kaslr, arch=arch))

    return make


@pytest.fixture(scope="session")
def kdump_crash(kcrash_cache: Path) -> Callable[[str, str], Path]:
    """Factory: ``kdump_crash(kind, kernel)`` -> the crash directory of a kdump run (the capture
    kernel's ``vmcore.kcrash`` and ``vmcore.makedumpfile``), cached by content like ``lab_crash``."""

    @functools.cache
    def get(kind: str, kernel: str) -> Path:
        return cached_crash(kcrash_cache, CrashOptions(kind, kernel, via="kdump"))

    return get


@pytest.fixture(scope="session")
def lab_case(lab_crash: Callable[..., Path], kdump_crash: Callable[[str, str], Path],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[tuple[Any, ...]], Path]:
    """Factory: ``lab_case(case)`` -> the directory an oracle reads a case from. A QEMU case
    ``(kind, kernel, kaslr)`` is ``lab_crash``'s directory; a kdump case ``(kind, kernel, kaslr, file)``
    (support.drgn_oracle.KDUMP_CASES) gets a directory of links in which ``vmcore.elf`` and
    ``vmcore.kdump`` both name the capture kernel's ``file``, beside its ``lab.json`` and ``console.log``
    (skipped when that file was not written: makedumpfile is not on the host)."""

    @functools.cache
    def get(case: tuple[Any, ...]) -> Path:
        if len(case) == 3:
            return lab_crash(*case)
        kind, kernel, _, name = case
        out = kdump_crash(kind, kernel)
        if not (out / name).exists():
            pytest.skip(f"no {name} (makedumpfile is not on the host)")
        view = tmp_path_factory.mktemp(f"kdump-{kind}-{kernel}-{name.removeprefix('vmcore.')}", numbered=True)
        for link, target in (("vmcore.elf", name), ("vmcore.kdump", name), (name, name),
                             ("lab.json", "lab.json"), ("console.log", "console.log")):
            (view / link).symlink_to(out / target)
        return view

    return get


@pytest.fixture(scope="session")
def lab_vmlinux_dbg(kcrash_cache: Path) -> Callable[..., Path]:
    """Factory: ``lab_vmlinux_dbg(kernel, arch="x86_64")`` -> the Debian ``-dbg`` vmlinux of that kernel."""

    @functools.cache
    def get(kernel: str, arch: str = "x86_64") -> Path:
        return fetch_debuginfo(kcrash_cache, kernel, arch)

    return get
