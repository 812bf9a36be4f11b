"""The lab's architecture table against the kind table and the tools it names."""

from __future__ import annotations

import pytest

from kcrash.errors import LabError
from kcrash.lab.arches import HOST_ARCH, LAB_ARCHES, get_arch
from kcrash.lab.kinds import KINDS
from kcrash.lab.tools import ARCH_TOOLS, BOOT_TOOLS


def test_kind_exceptions_name_real_kinds() -> None:
    for arch in LAB_ARCHES.values():
        assert {name for name, _ in arch.unsupported_kinds + arch.panic_messages} <= set(KINDS), arch.name
        assert all(why for _, why in arch.unsupported_kinds)


def test_the_host_row_is_the_x86_64_lab_of_before() -> None:
    host = get_arch(HOST_ARCH)
    assert (host.debian, host.qemu, host.console, host.pvpanic, host.no_collector) == (
        "amd64", "qemu-system-x86_64", "ttyS0", True, "")
    assert {host.qemu: host.qemu_package} == BOOT_TOOLS and not host.cross_compile


def test_foreign_rows_name_their_tools_and_why_there_is_no_collector() -> None:
    for arch in LAB_ARCHES.values():
        if arch.name == HOST_ARCH:
            continue
        assert arch.cross_compile.endswith("-") and arch.cross_package
        tools = {arch.qemu: arch.qemu_package, f"{arch.cross_compile}gcc-12": arch.cross_package}
        assert ARCH_TOOLS[arch.name] == tools
        # without pvpanic the panic is seen on the console; the machine must be chosen explicitly
        assert not arch.pvpanic and "-machine" in arch.machine and arch.no_collector


def test_unknown_architecture() -> None:
    with pytest.raises(LabError, match="unknown architecture 'riscv64'; supported: x86_64, arm64"):
        get_arch("riscv64")
