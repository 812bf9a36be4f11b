"""kcrash.analysis.system on a synthetic kernel: a task's root, cwd and files (a reserved NULL fd left
out, an unreadable dentry as a row with an error), the mount table, devices with their addresses,
and task_sockets (held sockets of every task once per files_struct, then the hashed TCP sockets no
task holds; only the given task's when one is given)."""

from __future__ import annotations

import pytest

from kcrash.analysis.system import mounts, net_devices, task_files, task_sockets
from support.system_kernel import Kernel


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    rootsb = k.superblock(b"rootfs")
    slash = k.dentry(b"/", None, mode=0o40755, sb=rootsb)
    root = k.mount(rootsb, slash, b"rootfs")
    tmp_dir = k.dentry(b"tmp", slash, mode=0o40755, sb=rootsb)
    tmpsb = k.superblock(b"tmpfs")
    tmp_root = k.dentry(b"/", None, mode=0o41777, sb=tmpsb)
    tmp = k.mount(tmpsb, tmp_root, b"tmpfs", root, tmp_dir)
    k.namespace_owner()
    init = k.file(root, k.dentry(b"init", slash, mode=0o100755, sb=rootsb))
    broken = k.file(root, 0xFFFF888000000000)  # an unreadable dentry
    k.task(1, b"init", {0: init, 7: broken}, reserved=(3,), root=(root, slash), cwd=(tmp, tmp_root))
    listener = k.sock(10, 10, 6, local=bytes(16), remote=bytes(16), lport=4321)
    client = k.sock(2, 1, 6, local=bytes([127, 0, 0, 1]), remote=bytes([127, 0, 0, 1]), lport=40000, rport=4321)
    accepted = k.sock(2, 1, 6, local=bytes([127, 0, 0, 1]), remote=bytes([127, 0, 0, 1]), lport=4321, rport=40000)
    k.task(2, b"nc", {3: k.socket_file(root, listener, 1, 10)})
    k.task(3, b"nc", {3: k.socket_file(root, client, 1, 11)})
    k.hash_tcp([client, accepted])
    k.netdev(b"lo", 1, 0x9, ipv4=((bytes([127, 0, 0, 1]), 8, b"lo"),))
    return k


def test_task_files(k: Kernel) -> None:
    result = task_files(k.obj("task_struct", k.tasks[0]))
    assert (result.pid, result.comm, result.root, result.cwd) == (1, "init", "/", "/tmp")
    assert [(f.fd, f.type, f.path, f.mode) for f in result.files if f.error is None] == [(0, "REG", "/init", 0o100755)]
    bad = result.files[-1]
    assert (bad.fd, bad.dentry, bad.type) == (7, 0, "?") and bad.error
    assert 3 not in [f.fd for f in result.files]


def test_task_without_fs(k: Kernel) -> None:
    k.u64(k.tasks[1] + k.off("task_struct", "fs"), 0)
    result = task_files(k.obj("task_struct", k.tasks[1]))
    assert (result.root, result.cwd) == ("", "") and [f.path for f in result.files] == ["socket:[10]"]
    assert result.files[0].type == "SOCK"


def test_mounts_and_devices(k: Kernel) -> None:
    assert [(m.type, m.devname, m.dirname) for m in mounts(k.prog)] == [("rootfs", "rootfs", "/"),
                                                                       ("tmpfs", "tmpfs", "/tmp")]
    (lo,) = net_devices(k.prog)
    assert (lo.name, lo.ifindex, lo.flag_names, [a.address for a in lo.ipv4], lo.ipv6) == (
        "lo", 1, ("UP", "LOOPBACK"), ["127.0.0.1"], ())


def test_task_sockets(k: Kernel) -> None:
    rows = task_sockets(k.prog)
    assert [(r.pid, r.fd, r.sock.state, r.sock.local_port) for r in rows] == [
        (2, 3, "LISTEN", 4321), (3, 3, "ESTABLISHED", 40000), (None, None, "ESTABLISHED", 4321)]
    only = task_sockets(k.prog, [k.obj("task_struct", k.tasks[2])])
    assert [(r.pid, r.sock.local_port) for r in only] == [(3, 40000)]


def test_threads_sharing_files_are_listed_once(k: Kernel) -> None:
    files = k.obj("task_struct", k.tasks[1]).files
    k.task(4, b"nc-thread", {})
    k.u64(k.tasks[-1] + k.off("task_struct", "files"), int(files))
    assert [r.pid for r in task_sockets(k.prog) if r.pid is not None] == [2, 3]
