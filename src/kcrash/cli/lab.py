"""
kcrash.cli.lab
==============

``kcrash lab``: fetch the supported Debian kernels, crash them on purpose under QEMU, or boot a
live guest. Argument parsing only; the work is in :mod:`kcrash.lab`.
"""

from __future__ import annotations

from pathlib import Path

import click

from kcrash.cli.common import cache_dir, echo_json
from kcrash.lab import debian
from kcrash.lab.boot import BootOptions, LiveGuest, boot_live
from kcrash.lab.crash import CrashOptions, run_crash
from kcrash.lab.kinds import KINDS
from kcrash.lab.prepare import fetch_debuginfo, prepare_kernel
from kcrash.lab.tools import require_tools

__all__ = ["lab"]

_KERNELS = click.Choice(sorted(debian.KERNEL_FLAVOURS))
_ARCHES = click.Choice(list(debian.ARCHES))


@click.group()
def lab() -> None:
    """Boot real Debian kernels under QEMU and crash them on purpose."""


@lab.command()
@click.option("--fetch", "fetch", metavar="VERSION", type=_KERNELS, help="Fetch and prepare this kernel.")
@click.option("--with-debuginfo", is_flag=True, help="Also extract the -dbg vmlinux (large download).")
@click.option("--arch", type=_ARCHES, default="x86_64", show_default=True, help="Kernel architecture.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def kernels(fetch: str | None, with_debuginfo: bool, arch: str, as_json: bool) -> None:
    """List the supported kernels and what of them is in the cache."""
    cache = cache_dir()
    if fetch:
        require_tools(boot=False, arch=arch)
        prepare_kernel(cache, fetch, arch)
        if with_debuginfo:
            fetch_debuginfo(cache, fetch, arch)
    rows = [_kernel_row(cache, flavour, arch) for flavour in sorted(debian.KERNEL_FLAVOURS)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        have = ", ".join(k for k in ("image", "headers", "debuginfo") if row[k]) or "nothing cached"
        click.echo(f"{row['flavour']:5} {row['package']} {row['version']}  [{have}]")


def _kernel_row(cache: Path, flavour: str, arch: str = "x86_64") -> dict[str, object]:
    pkg = debian.resolve_kernel(flavour, arch=arch)
    root = debian.kernel_dir(cache, pkg)
    return {
        "flavour": flavour, "package": pkg.name, "version": pkg.version, "release": pkg.release,
        "image": (root / "image" / "boot" / f"vmlinuz-{pkg.release}").exists(),
        "headers": (root / "headers").is_dir(),
        "debuginfo": (root / "dbg" / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{pkg.release}").exists(),
        "cache": str(root),
    }


@lab.command()
@click.argument("kind", type=click.Choice(sorted(KINDS), case_sensitive=False))
@click.option("--kernel", type=_KERNELS, default="6.1", show_default=True)
@click.option("--kaslr/--no-kaslr", default=False, show_default=True)
@click.option("--mem", default="256M", show_default=True)
@click.option("--smp", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the panic.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--via", type=click.Choice(["qemu", "kdump"]), default="qemu", show_default=True,
              help="qemu: QMP dump-guest-memory; kdump: a kexec'd capture kernel runs kcrash collect vmcore.")
@click.option("--arch", type=_ARCHES, default="x86_64", show_default=True,
              help="Guest architecture: Debian's arm64 kernels run under qemu-system-aarch64 (TCG).")
@click.option("--json", "as_json", is_flag=True, help="Print lab.json.")
def crash(kind: str, kernel: str, kaslr: bool, mem: str, smp: int, timeout: float | None,
          output: Path, via: str, arch: str, as_json: bool) -> None:
    """Boot KERNEL, crash it with KIND and collect the dump (through QMP, or kdump) into OUTPUT."""
    require_tools(boot=True, arch=arch)
    info = run_crash(cache_dir(), CrashOptions(kind, kernel, kaslr, mem, smp, timeout, via, arch), output)
    if as_json:
        echo_json(info)
        return
    t = info["timings"]
    took = (f"panic after {t['boot_to_panic_s']} s" if via == "qemu"
            else f"boot to capture-kernel poweroff {t['boot_to_poweroff_s']} s")
    click.echo(f"{info['kind']} on {info['kernel']['release']} ({arch}, KASLR {'on' if kaslr else 'off'}): "
               f"{took}: {info.get('panic_line', '?')}")
    for name, size in info["files"].items():
        click.echo(f"  {output / name}  {size:,} bytes")
    click.echo(f"  {output / 'lab.json'}  crashing function {info['crash_function']}")


@lab.command()
@click.option("--kernel", type=_KERNELS, default="6.1", show_default=True)
@click.option("--kaslr/--no-kaslr", default=False, show_default=True)
@click.option("--mem", default="256M", show_default=True)
@click.option("--smp", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--gdb", "gdb_port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="gdbstub TCP port on 127.0.0.1 (0 picks a free one).")
@click.option("--qmp", "qmp_socket", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also serve QMP on this unix socket.")
@click.option("--serial", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the guest console here.")
@click.option("--duration", type=float, default=None, help="Shut down after this many seconds.")
@click.option("--arch", type=_ARCHES, default="x86_64", show_default=True, help="Guest architecture.")
def boot(kernel: str, kaslr: bool, mem: str, smp: int, gdb_port: int, qmp_socket: Path | None,
         serial: Path | None, duration: float | None, arch: str) -> None:
    """Boot a live guest that does not crash, for live debugging; Ctrl-C shuts it down."""
    require_tools(boot=True, arch=arch)
    opts = BootOptions(kernel, kaslr, mem, smp, gdb_port, qmp_socket, serial, arch=arch)
    boot_live(cache_dir(), opts, _print_attach, stop_after=duration)
    click.echo("guest shut down")


def _print_attach(guest: LiveGuest) -> None:
    click.echo(f"guest {guest.release} is up after {guest.boot_seconds:.1f} s")
    if guest.gdb_port is not None:
        click.echo(f"  gdb:    gdb vmlinux -ex 'target remote 127.0.0.1:{guest.gdb_port}'")
    if guest.qmp_socket is not None:
        click.echo(f"  qmp:    {guest.qmp_socket}   (drgn --qemu {guest.qmp_socket} ...)")
    click.echo(f"  serial: {guest.serial}")
    click.echo("press Ctrl-C to shut it down")
