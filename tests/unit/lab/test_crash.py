"""Pure parts of a crash run: the command line and the facts read back from the console."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.errors import LabError
from kcrash.lab.crash import CrashOptions, _console_facts, crash_key, kernel_cmdline, planted_facts
from kcrash.lab.debian import KernelPackage
from kcrash.lab.kinds import get_kind
from kcrash.lab.kmod import BuiltModule
from kcrash.lab.prepare import PreparedKernel

CONSOLE = """\
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1))
[    1.673560] kcrash_test: planted 100 objects at ffffffffc0209060, global at ffffffffc0209080
[    1.685349] Kernel panic - not syncing: sysrq triggered crash
"""


def test_cmdline_selects_kind_and_kaslr() -> None:
    line = kernel_cmdline(get_kind("bug"), kaslr=False)
    assert "kcrash_kind=BUG" in line.split() and "nokaslr" in line.split() and "oops=panic" in line.split()
    assert "nokaslr" not in kernel_cmdline(get_kind("bug"), kaslr=True).split()
    assert "kcrash_kind=none" in kernel_cmdline(None, kaslr=False).split()


def test_planted_facts_read_the_printed_addresses() -> None:
    facts = planted_facts(CONSOLE)
    assert facts["list_address"] == 0xFFFFFFFFC0209060
    assert facts["global_address"] == 0xFFFFFFFFC0209080
    assert facts["planted_count_printed"] == facts["object_count"] == 100
    assert len(facts["hostile_task"]) <= 15 and "<" in facts["hostile_task"]


def test_planted_facts_without_console_output() -> None:
    assert "list_address" not in planted_facts("")


def test_console_facts() -> None:
    facts = _console_facts(CONSOLE)
    assert facts == {"panic_line": "sysrq triggered crash", "panic_uptime_s": 1.685349,
                     "release_booted": "6.1.0-56-amd64"}


def _prepared(flavour: str, module: bool) -> PreparedKernel:
    pkg = KernelPackage(flavour, "linux-image-x", "1", "x")
    built = BuiltModule(Path("/m.ko"), False, "abc") if module else None
    return PreparedKernel(pkg, Path("/vmlinuz"), Path("/modules"), built, Path("/initrd-0123.cpio.gz"))


def test_module_kinds_are_refused_where_the_module_is_not_built() -> None:
    prepared = _prepared("7", module=False)
    with pytest.raises(LabError, match=r"BUG needs the test module.*supports SYSRQ, INITEXIT, OOM, NMI"):
        crash_key(prepared, CrashOptions("BUG", "7"))
    assert crash_key(prepared, CrashOptions("SYSRQ", "7")).startswith("sysrq-7-")


def test_crash_key_depends_on_whether_the_module_is_built() -> None:
    opts = CrashOptions("SYSRQ", "6.1")
    assert crash_key(_prepared("6.1", True), opts) != crash_key(_prepared("6.1", False), opts)


def _arm64_prepared() -> PreparedKernel:
    pkg = KernelPackage("6.12", "linux-image-6.12.1-arm64", "1", "6.12.1-arm64", arch="arm64")
    return PreparedKernel(pkg, Path("/vmlinuz"), Path("/modules"), BuiltModule(Path("/m.ko"), False, "abc"),
                          Path("/initrd-0123.cpio.gz"))


def test_arm64_keys_and_names_carry_the_architecture() -> None:
    x86 = _prepared("6.12", module=True)
    key = crash_key(x86, CrashOptions("BUG", "6.12"))
    assert key == crash_key(x86, CrashOptions("BUG", "6.12", arch="x86_64")) and "x86" not in key
    arm = crash_key(_arm64_prepared(), CrashOptions("BUG", "6.12", arch="arm64"))
    assert arm.startswith("bug-6.12-arm64-") and arm[-16:] != key[-16:]
    line = kernel_cmdline(get_kind("bug"), kaslr=False, arch="arm64").split()
    assert "console=ttyAMA0" in line and "console=ttyS0" not in line


def test_kinds_arm64_cannot_do_are_refused() -> None:
    with pytest.raises(LabError, match=r"DIVZERO does not work on arm64: .*does not trap"):
        crash_key(_arm64_prepared(), CrashOptions("DIVZERO", "6.12", arch="arm64"))
    with pytest.raises(LabError, match="NMI does not work on arm64"):
        crash_key(_arm64_prepared(), CrashOptions("NMI", "6.12", arch="arm64"))


def test_x86_64_keys_keep_the_formula_of_before_arm64() -> None:
    # Cached x86-64 crashes are found by these keys: adding the arch option must not change them.
    import hashlib

    from kcrash.lab.crash import LAB_FORMAT

    prepared = _prepared("6.12", module=True)
    text = "|".join([str(LAB_FORMAT), prepared.package.key, "abc", "initrd-0123.cpio.gz", "BUG", "False", "256M", "2"])
    expected = f"bug-6.12-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    assert crash_key(prepared, CrashOptions("BUG", "6.12")) == expected
