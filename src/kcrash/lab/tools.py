"""
kcrash.lab.tools
================

Host tools the lab needs, checked up front so a missing one is reported in one line naming the
Debian package to install, before any download or build starts.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kcrash.errors import LabToolMissingError
from kcrash.lab.arches import HOST_ARCH, LAB_ARCHES

__all__ = ["ARCH_TOOLS", "BOOT_TOOLS", "BUILD_TOOLS", "require_tools"]

# tool -> Debian package
BUILD_TOOLS: dict[str, str] = {
    "apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "tar": "tar",
    "make": "make", "gcc-12": "gcc-12", "pahole": "dwarves",
}
BOOT_TOOLS: dict[str, str] = {"qemu-system-x86_64": "qemu-system-x86"}
#: what a foreign-architecture guest needs instead of the x86-64 QEMU (its busybox comes from its archive)
ARCH_TOOLS: dict[str, dict[str, str]] = {
    a.name: {a.qemu: a.qemu_package, f"{a.cross_compile}gcc-12": a.cross_package}
    for a in LAB_ARCHES.values() if a.name != HOST_ARCH
}


def require_tools(boot: bool, arch: str = "x86_64") -> None:
    """Raise :class:`LabToolMissingError` for the first missing tool (QEMU first when booting)."""
    if arch in ARCH_TOOLS:
        wanted = {**ARCH_TOOLS[arch], **BUILD_TOOLS}
    else:
        wanted = {**BOOT_TOOLS, **BUILD_TOOLS} if boot else BUILD_TOOLS
    for tool, package in wanted.items():
        if shutil.which(tool) is None:
            raise LabToolMissingError(tool, package)
    if arch == HOST_ARCH and not Path("/bin/busybox").exists():
        raise LabToolMissingError("/bin/busybox", "busybox-static")
