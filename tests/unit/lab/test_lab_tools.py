"""kcrash.lab.tools.require_tools: the first missing host tool is one LabToolMissingError naming the
Debian package (QEMU checked only when booting), busybox last."""

from __future__ import annotations

import pytest

from kcrash.errors import LabToolMissingError
from kcrash.lab import tools
from kcrash.lab.tools import BOOT_TOOLS, BUILD_TOOLS, require_tools


def _only_missing(monkeypatch: pytest.MonkeyPatch, missing: set[str], busybox: bool = True) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda tool: None if tool in missing else f"/usr/bin/{tool}")
    monkeypatch.setattr(tools.Path, "exists", lambda self: busybox if str(self) == "/bin/busybox" else True)


def test_missing_build_tool_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _only_missing(monkeypatch, {"pahole"})
    with pytest.raises(LabToolMissingError, match=r"pahole not found: install it with 'apt-get install dwarves'") \
            as info:
        require_tools(boot=False)
    assert (info.value.tool, info.value.package) == ("pahole", "dwarves")


def test_qemu_only_when_booting(monkeypatch: pytest.MonkeyPatch) -> None:
    _only_missing(monkeypatch, {"qemu-system-x86_64", "make"})
    with pytest.raises(LabToolMissingError) as info:
        require_tools(boot=True)
    assert info.value.package == BOOT_TOOLS["qemu-system-x86_64"]  # QEMU is reported first
    with pytest.raises(LabToolMissingError) as info:
        require_tools(boot=False)
    assert info.value.tool == "make" and info.value.package == BUILD_TOOLS["make"]


def test_busybox_and_all_present(monkeypatch: pytest.MonkeyPatch) -> None:
    _only_missing(monkeypatch, set(), busybox=False)
    with pytest.raises(LabToolMissingError, match="busybox-static"):
        require_tools(boot=True)
    _only_missing(monkeypatch, set())
    require_tools(boot=True)  # nothing missing: no error


def test_arm64_needs_its_qemu_and_cross_compiler_not_the_x86_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    _only_missing(monkeypatch, {"qemu-system-x86_64"}, busybox=False)
    require_tools(boot=True, arch="arm64")  # neither x86 QEMU nor the host's busybox is used
    _only_missing(monkeypatch, {"aarch64-linux-gnu-gcc-12"})
    with pytest.raises(LabToolMissingError, match="gcc-12-aarch64-linux-gnu"):
        require_tools(boot=True, arch="arm64")
    _only_missing(monkeypatch, {"qemu-system-aarch64"})
    with pytest.raises(LabToolMissingError, match="qemu-system-arm"):
        require_tools(boot=True, arch="arm64")
