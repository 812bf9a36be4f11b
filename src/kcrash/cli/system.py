"""
kcrash.cli.system
=================

crash's ``files``, ``mount`` and ``net``: ``kcrash files DUMP [PID|TASK]`` (root, working
directory, then FD, FILE, DENTRY, INODE, TYPE, PATH of each open descriptor; the panic task by
default), ``kcrash mount DUMP`` (MOUNT, SUPERBLK, TYPE, DEVNAME, DIRNAME) and ``kcrash net DUMP``
(NET_DEVICE, NAME, IP ADDRESS(ES), state) or ``net -s [PID|TASK]`` (the sockets of one task or of
every task: family, type, local and remote address:port, state). Argument parsing and output
only; the work is in :mod:`kcrash.analysis.system`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import DumpOrLive, Number
from kcrash.errors import CliError, KcrashError

if TYPE_CHECKING:
    from kcrash.analysis.system import NetDevice, TaskFiles, TaskSocket
    from kcrash.types.program import Program

__all__ = ["commands", "files", "mount", "net"]


@click.command("files")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("target", metavar="[PID|TASK]", required=False, type=Number("pid_or_address"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def files(path: str, target: int | None, as_json: bool) -> None:
    """The open files of the panic task (default) or of a PID or task address: root, working
    directory, then each descriptor's file, dentry, inode, type and path."""
    # lazy: +369 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.system import task_files

    # lazy: +393 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.targets import find_task

    with opened_target(path, orc=False) as prog:
        task = find_task(prog, target)
        try:
            result = task_files(task)
        except KcrashError as exc:
            raise CliError(f"cannot read the files of task {int(task):#x}: {exc}", 1) from None
    if as_json:
        echo_json(dataclasses.asdict(result))
        return
    _print_files(result)


def _print_files(result: TaskFiles) -> None:
    click.echo(f"PID: {result.pid:<7} TASK: {result.task:016x}  COMMAND: \"{result.comm}\"")
    click.echo(f"ROOT: {result.root}    CWD: {result.cwd}")
    if not result.files:
        click.echo("No open files")
        return
    click.echo(f"{'FD':>3} {'FILE':<16} {'DENTRY':<16} {'INODE':<16} {'TYPE':<4} PATH")
    for f in result.files:
        path = f.path if f.error is None else f"(unreadable: {f.error})"
        click.echo(f"{f.fd:>3} {f.file:016x} {f.dentry:016x} {f.inode:016x} {f.type:<4} {path}")


@click.command("mount")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def mount(path: str, as_json: bool) -> None:
    """The mounts of the initial mount namespace: mount, superblock, type, device, mount point."""
    # lazy: +369 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.system import mounts

    with opened_target(path, orc=False) as prog:
        try:
            rows = mounts(prog)
        except KcrashError as exc:
            raise CliError(f"cannot list the mounts: {exc}", 1) from None
    if as_json:
        echo_json([dataclasses.asdict(row) for row in rows])
        return
    click.echo(f"{'MOUNT':<16} {'SUPERBLK':<16} {'TYPE':<10} {'DEVNAME':<12} DIRNAME")
    for row in rows:
        click.echo(f"{row.mount:016x} {row.superblock:016x} {row.type:<10} {row.devname:<12} {row.dirname}")


@click.command("net")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("target", metavar="[PID|TASK]", required=False, type=Number("pid_or_address"))
@click.option("-s", "sockets", is_flag=True, help="The sockets of a task (PID|TASK) or of every task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def net(path: str, target: int | None, sockets: bool, as_json: bool) -> None:
    """The network devices of every namespace (name, addresses, flags, state, MTU, MAC), or with
    -s the sockets tasks hold open."""
    if target is not None and not sockets:
        raise CliError("a PID or task address goes with -s (the sockets of that task)", 2)
    with opened_target(path, orc=False) as prog:
        try:
            if sockets:
                held = _sockets(prog, target)
            else:
                devices = _devices(prog)
        except KcrashError as exc:
            raise CliError(f"cannot read the network state: {exc}", 1) from None
    rows = held if sockets else devices
    if as_json:
        echo_json([dataclasses.asdict(row) for row in rows])
    elif sockets:
        _print_sockets(held)
    else:
        _print_devices(devices)


def _devices(prog: Program) -> list[NetDevice]:
    # lazy: +369 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.system import net_devices

    return net_devices(prog)


def _sockets(prog: Program, target: int | None) -> list[TaskSocket]:
    # lazy: +369 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.system import task_sockets

    # lazy: +393 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.targets import find_task

    return task_sockets(prog, None if target is None else [find_task(prog, target)])


def _print_devices(rows: list[NetDevice]) -> None:
    click.echo(f"{'NET_DEVICE':<16} {'NAME':<10} {'IP ADDRESS(ES)':<28} STATE")
    for d in rows:
        addresses = ", ".join(f"{a.address}/{a.prefixlen}" for a in (*d.ipv4, *d.ipv6)) or "-"
        flags = ",".join(d.flag_names) or "-"
        click.echo(f"{d.address:016x} {d.name:<10} {addresses:<28} {flags} oper {d.operstate} "
                   f"mtu {d.mtu}{' mac ' + d.mac if d.mac else ''}")


def _end(address: str, port: int, family: str) -> str:
    if family not in ("INET", "INET6"):
        return address or "-"
    return f"[{address}]:{port}" if family == "INET6" else f"{address}:{port}"


def _print_sockets(rows: list[TaskSocket]) -> None:
    click.echo(f"{'PID':>7} {'COMM':<16} {'FD':>3} {'SOCKET':<16} {'SOCK':<16} {'FAMILY':<7} {'TYPE':<9} "
               f"{'PROTO':<5} {'LOCAL':<24} {'REMOTE':<24} STATE")
    for r in rows:
        s = r.sock
        pid, comm, fd = ("-", "(no task)", "-") if r.pid is None else (str(r.pid), r.comm, str(r.fd))
        click.echo(f"{pid:>7} {comm:<16} {fd:>3} {s.socket:016x} {s.sock:016x} {s.family:<7} {s.type:<9} "
                   f"{s.protocol:<5} {_end(s.local, s.local_port, s.family):<24} "
                   f"{_end(s.remote, s.remote_port, s.family):<24} {s.state}")


commands: list[click.Command] = [files, mount, net]
