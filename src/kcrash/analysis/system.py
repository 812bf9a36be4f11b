"""
kcrash.analysis.system
======================

System state for crash's ``files``, ``mount`` and ``net``: a task's root, working directory and open
files (descriptor, ``struct file``, dentry, inode, type, path), the mounts of the initial mount
namespace (mount, superblock, type, device name, mount point), the network devices of every
namespace (name, index, flags, state, MTU, MAC, IPv4/IPv6 addresses) and the sockets tasks hold
(family, type, protocol, state, both ends). The walks are :mod:`kcrash.helpers.linux.fs` and
:mod:`kcrash.helpers.linux.net`; this module only shapes their results into frozen dataclasses and
records what could not be read (a damaged file or device is a row with an ``error``, not an
exception). Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kcrash.errors import KcrashError
from kcrash.helpers.linux import fs, net
from kcrash.helpers.linux.net import IfAddress, SockInfo
from kcrash.helpers.linux.sched import for_each_task
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["MountEntry", "NetDevice", "OpenFile", "TaskFiles", "TaskSocket", "mounts", "net_devices",
           "task_files", "task_sockets"]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class OpenFile:
    """One open descriptor; ``error`` says what could not be read of it (the rest is 0/empty)."""

    fd: int
    file: int
    dentry: int
    inode: int
    mode: int
    type: str
    path: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskFiles:
    """crash's ``files`` of one task: its root and working directory, then its descriptors."""

    pid: int
    task: int
    comm: str
    root: str
    cwd: str
    files: tuple[OpenFile, ...]


def _open_file(fd: int, file: Object) -> OpenFile:
    try:
        dentry = file.f_path.dentry.read_()
        inode = dentry.d_inode.read_()
        mode = int(inode.i_mode) if int(inode) else 0
        return OpenFile(fd, int(file), int(dentry), int(inode), mode, fs.inode_type(mode) if int(inode) else "?",
                        _text(fs.file_path(file)))
    except KcrashError as exc:
        return OpenFile(fd, int(file), 0, 0, 0, "?", "", str(exc))


def _fs_path(task: Object, which: str) -> str:
    # task->fs->root / task->fs->pwd; an exiting task has no fs_struct
    try:
        fs_struct = task.fs.read_()
        return _text(fs.d_path(fs_struct.member_(which))) if int(fs_struct) else ""
    except KcrashError as exc:
        return f"({exc})"


def task_files(task: Object) -> TaskFiles:
    """The root, working directory and open files of ``task`` (``struct task_struct *``); a
    descriptor reserved but not installed (NULL file) is left out, as crash does.

    :raises ValidationError: the descriptor table is implausible
    """
    files = tuple(_open_file(fd, file) for fd, file in fs.for_each_file(task) if int(file))
    return TaskFiles(int(task.pid), int(task), _text(task.comm.string_()), _fs_path(task, "root"),
                     _fs_path(task, "pwd"), files)


@dataclass(frozen=True, slots=True)
class MountEntry:
    """crash's ``mount`` row: ``struct mount``, ``struct super_block``, type, device, mount point."""

    mount: int
    superblock: int
    type: str
    devname: str
    dirname: str


def mounts(prog: Program) -> list[MountEntry]:
    """The mounts of the initial mount namespace (``init_task.nsproxy->mnt_ns``), in its order."""
    return [MountEntry(int(m), int(m.mnt.mnt_sb), _text(fs.mount_fstype(m)), _text(fs.mount_src(m)),
                       _text(fs.mount_dst(m))) for m in fs.for_each_mount(prog)]


@dataclass(frozen=True, slots=True)
class NetDevice:
    """One ``struct net_device`` and its state; ``net`` is its namespace's ``struct net``."""

    address: int
    net: int
    name: str
    ifindex: int
    flags: int
    flag_names: tuple[str, ...]
    operstate: str
    mtu: int
    mac: str
    ipv4: tuple[IfAddress, ...]
    ipv6: tuple[IfAddress, ...]


def _net_device(namespace: Object, dev: Object) -> NetDevice:
    flags = int(dev.flags)
    return NetDevice(int(dev), int(namespace), _text(net.netdev_name(dev)), int(dev.ifindex), flags,
                     tuple(net.netdev_flag_names(flags)), net.netdev_operstate(dev), int(dev.mtu),
                     net.netdev_mac(dev), tuple(net.netdev_ipv4_ifaddrs(dev)), tuple(net.netdev_ipv6_ifaddrs(dev)))


def net_devices(prog: Program) -> list[NetDevice]:
    """Every network device of every network namespace (``init_net`` first)."""
    return [_net_device(namespace, dev) for namespace in net.for_each_net(prog)
            for dev in net.for_each_netdev(prog, namespace)]


@dataclass(frozen=True, slots=True)
class TaskSocket:
    """A socket a task holds open as descriptor ``fd``; pid, task, fd and file are None for a
    TCP socket no task holds (found in the established hash: not yet accepted, or TIME_WAIT)."""

    pid: int | None
    task: int | None
    comm: str
    fd: int | None
    file: int | None
    sock: SockInfo


def _sockets_of(task: Object) -> list[TaskSocket]:
    out = []
    pid, comm = int(task.pid), _text(task.comm.string_())
    for fd, file in fs.for_each_file(task):
        socket = net.sock_from_file_or_none(file) if int(file) else None
        if socket is not None:
            out.append(TaskSocket(pid, int(task), comm, fd, int(file), net.sock_info(socket)))
    return out


def task_sockets(prog: Program, tasks: Iterable[Object] | None = None) -> list[TaskSocket]:
    """The sockets held by ``tasks``; by default those of every task (threads sharing one
    ``files_struct`` are listed once, under the first of them), then the TCP sockets of the
    established hash that no task holds."""
    seen: set[int] = set()
    out: list[TaskSocket] = []
    for task in for_each_task(prog) if tasks is None else tasks:
        files = int(task.files)
        if files and files not in seen:
            seen.add(files)
            out.extend(_sockets_of(task))
    if tasks is None:
        held = {row.sock.sock for row in out}
        out.extend(TaskSocket(None, None, "", None, None, net.sock_common_info(common))
                   for common in net.for_each_tcp_sock(prog) if int(common) not in held)
    return out
