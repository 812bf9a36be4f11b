"""
kcrash.lab.arches
=================

The lab's guest architectures, one row each: Debian's name for it, the QEMU that runs it (TCG) and
how, the serial console, the modules the guest loads, the cross-compiler of the test module, how a
panic is seen, and what does not work there. Everything architecture-specific in the lab reads this
table; adding an architecture is a row here. ``x86_64`` is the machine's own architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcrash.errors import LabError

__all__ = ["HOST_ARCH", "LAB_ARCHES", "LabArch", "get_arch"]


@dataclass(frozen=True, slots=True)
class LabArch:
    """One guest architecture of the lab."""

    #: kcrash's name (``x86_64``, ``arm64``)
    name: str
    #: Debian's architecture name (``amd64``, ``arm64``)
    debian: str
    #: the QEMU binary and the Debian package that has it
    qemu: str
    qemu_package: str
    #: QEMU arguments choosing the machine and CPU (before ``-accel tcg``)
    machine: tuple[str, ...]
    #: QEMU arguments after ``-device vmcoreinfo`` that make a panic visible to QMP
    panic_devices: tuple[str, ...]
    #: the guest's serial console device
    console: str
    #: modules the initramfs carries besides the test module (``init.sh`` tries them all)
    guest_modules: tuple[str, ...]
    #: ``CROSS_COMPILE`` prefix of the test module's build, and the Debian package of that gcc-12
    cross_compile: str = ""
    cross_package: str = ""
    #: True: pvpanic pauses the guest inside panic() (QMP ``GUEST_PANICKED``); False: the serial
    #: console is watched for the end of the panic
    pvpanic: bool = True
    #: why kcrash's own QEMU collector is not run on this architecture ("" when it is)
    no_collector: str = ""
    #: crash kinds that cannot work here, with the reason
    unsupported_kinds: tuple[tuple[str, str], ...] = ()
    #: panic messages that differ here from the kind table's
    panic_messages: tuple[tuple[str, str], ...] = ()


HOST_ARCH = "x86_64"

LAB_ARCHES: dict[str, LabArch] = {a.name: a for a in (
    LabArch("x86_64", "amd64", "qemu-system-x86_64", "qemu-system-x86", (),
            ("-device", "pvpanic", "-action", "panic=pause"), "ttyS0", ("qemu_fw_cfg", "pvpanic", "pvpanic-mmio")),
    # virt has fw_cfg (for -device vmcoreinfo) and a PL011 UART (ttyAMA0). Debian's arm64 kernels have
    # no pvpanic driver. pauth-impdef=on: the guest keeps pointer authentication (PAC bits in saved
    # return addresses), but TCG signs with QEMU's cheap implementation-defined hash instead of
    # emulating QARMA5, which took boot to panic from 19-34 s to 8-20 s here (README, "arm64 lab: what
    # TCG costs here").
    LabArch("arm64", "arm64", "qemu-system-aarch64", "qemu-system-arm",
            ("-machine", "virt", "-cpu", "max,pauth-impdef=on"), (), "ttyAMA0", ("qemu_fw_cfg",),
            cross_compile="aarch64-linux-gnu-", cross_package="gcc-12-aarch64-linux-gnu", pvpanic=False,
            no_collector="kcrash's QEMU collector (kcrash.collect.qemu) parses x86-64 registers from HMP "
                         "'info registers' and finds VMCOREINFO through x86-64 page tables; not run on arm64",
            unsupported_kinds=(
                ("DIVZERO", "arm64 integer division by zero does not trap (it yields 0)"),
                ("NMI", "QEMU's virt machine has no NMI to inject (inject-nmi) and the kernel no unknown_nmi_panic"),
            ),
            # the overflow is caught on the overflow stack: handle_bad_stack -> panic_bad_stack -> nmi_panic
            panic_messages=(("STACK_OVERFLOW", "kernel stack overflow"),)),
)}


def get_arch(name: str) -> LabArch:
    """The lab architecture called ``name``; unknown ones raise :class:`LabError`."""
    if name not in LAB_ARCHES:
        raise LabError(f"unknown architecture {name!r}; supported: {', '.join(LAB_ARCHES)}")
    return LAB_ARCHES[name]
