"""kcrash.helpers.linux.fs on a synthetic kernel: d_path across mounts (nested mount points, the
d_dname filesystems), file_path's pipe:/socket: names, for_each_file over open_fds (a reserved NULL
descriptor, fget), for_each_mount as a list and as the v6.8 rbtree (cursors skipped), mount
fstype/src/dst, and the bounds (a dentry cycle, an implausible max_fds)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kcrash.errors import ValidationError
from kcrash.helpers.linux import fs
from support.system_kernel import SYMS, Kernel

PIPEFS_DNAME, OTHER_DNAME = SYMS + 0x40, SYMS + 0xC0


@dataclass
class World:
    k: Kernel
    root: int  # rootfs mount
    tmp: int  # tmpfs mount on /tmp
    debug: int  # debugfs on /sys/kernel/debug (inside sysfs on /sys)
    files: dict[str, int]  # name -> struct file
    task: int


def build(*, rbtree: bool = False) -> World:
    k = Kernel(rbtree=rbtree)
    rootsb = k.superblock(b"rootfs")
    slash = k.dentry(b"/", None, mode=0o40755, sb=rootsb)
    root = k.mount(rootsb, slash, b"rootfs")
    tmp_dir = k.dentry(b"tmp", slash, mode=0o40755, sb=rootsb)
    sys_dir = k.dentry(b"sys", slash, mode=0o40755, sb=rootsb)
    tmpsb = k.superblock(b"tmpfs")
    tmp_root = k.dentry(b"/", None, mode=0o41777, sb=tmpsb)
    tmp = k.mount(tmpsb, tmp_root, b"tmpfs", root, tmp_dir)
    syssb = k.superblock(b"sysfs")
    sys_root = k.dentry(b"/", None, mode=0o40755, sb=syssb)
    sysfs = k.mount(syssb, sys_root, b"sysfs", root, sys_dir)
    kernel_dir = k.dentry(b"kernel", sys_root, mode=0o40755, sb=syssb)
    debug_dir = k.dentry(b"debug", kernel_dir, mode=0o40755, sb=syssb)
    debugsb = k.superblock(b"fuse", b"sshfs")
    debug_root = k.dentry(b"/", None, mode=0o40755, sb=debugsb)
    debug = k.mount(debugsb, debug_root, b"host:/x", sysfs, debug_dir)
    pipesb = k.superblock(b"pipefs")
    files = {
        "init": k.file(root, k.dentry(b"init", slash, mode=0o100755, sb=rootsb)),
        "tmpfile": k.file(tmp, k.dentry(b"b", k.dentry(b"a", tmp_root, mode=0o40755, sb=tmpsb), sb=tmpsb)),
        "debugfile": k.file(debug, k.dentry(b"DIRECT", debug_root, mode=0o100600, sb=debugsb)),
        "pipe": k.file(root, k.dentry(b"", None, mode=0o10600, ino=77, sb=pipesb, dname=PIPEFS_DNAME)),
        "other": k.file(root, k.dentry(b"x", None, mode=0o100600, sb=k.superblock(b"xfs"), dname=OTHER_DNAME)),
    }
    task = k.task(10, b"sleep", {0: files["pipe"], 3: files["init"], 4: files["tmpfile"], 70: files["debugfile"]},
                  max_fds=128, reserved=(5,), root=(root, slash), cwd=(tmp, tmp_root))
    k.namespace_owner()
    return World(k, root, tmp, debug, files, task)


@pytest.fixture
def world() -> World:
    return build()


def test_d_path_crosses_mounts(world: World) -> None:
    f = world.k.obj("file", world.files["tmpfile"])
    assert fs.d_path(f.f_path) == b"/tmp/a/b"
    assert fs.d_path(f.f_path.address_of_()) == b"/tmp/a/b"
    assert fs.d_path(world.k.obj("file", world.files["debugfile"]).f_path) == b"/sys/kernel/debug/DIRECT"
    assert fs.d_path(f.f_path.mnt, f.f_path.dentry) == b"/tmp/a/b"
    with pytest.raises(TypeError):
        fs.d_path()


def test_d_path_of_a_d_dname_filesystem_is_its_type_as_drgn(world: World) -> None:
    assert fs.d_path(world.k.obj("file", world.files["pipe"]).f_path) == b"[pipefs]"
    assert fs.file_path(world.k.obj("file", world.files["pipe"])) == b"pipe:[77]"
    assert fs.file_path(world.k.obj("file", world.files["other"])) == b"[xfs]"
    assert fs.file_path(world.k.obj("file", world.files["init"])) == b"/init"


def test_d_path_cycle_is_a_validation_error(world: World) -> None:
    k = world.k
    a = k.dentry(b"a", None)
    b = k.dentry(b"b", a)
    k.u64(a + k.off("dentry", "d_parent"), b)  # a <-> b, neither its own parent
    with pytest.raises(ValidationError, match="cycle"):
        fs.d_path(k.obj("file", k.file(world.tmp, b)).f_path)


def test_for_each_file_yields_open_fds_with_reserved_null(world: World) -> None:
    task = world.k.obj("task_struct", world.task)
    got = [(fd, int(file)) for fd, file in fs.for_each_file(task)]
    assert got == [(0, world.files["pipe"]), (3, world.files["init"]), (4, world.files["tmpfile"]), (5, 0),
                   (70, world.files["debugfile"])]
    assert int(fs.fget(task, 70)) == world.files["debugfile"]
    assert int(fs.fget(task, 6)) == 0 and int(fs.fget(task, 1000)) == 0


def test_for_each_file_refuses_an_implausible_max_fds(world: World) -> None:
    k = world.k
    task = k.obj("task_struct", world.task)
    k.u32(int(task.files.fdt) + k.off("fdtable", "max_fds"), 0xFFFFFFF0)
    with pytest.raises(ValidationError, match="max_fds"):
        list(fs.for_each_file(task))


def test_task_without_files_has_none(world: World) -> None:
    k = world.k
    task = k.obj("task_struct", world.task)
    k.u64(world.task + k.off("task_struct", "files"), 0)
    assert list(fs.for_each_file(task)) == [] and int(fs.fget(task, 0)) == 0


@pytest.mark.parametrize("rbtree", [False, True], ids=["list", "rbtree"])
def test_for_each_mount(rbtree: bool) -> None:
    w = build(rbtree=rbtree)
    mounts = list(fs.for_each_mount(w.k.prog))
    assert [(fs.mount_fstype(m), fs.mount_src(m), fs.mount_dst(m)) for m in mounts] == [
        (b"rootfs", b"rootfs", b"/"), (b"tmpfs", b"tmpfs", b"/tmp"), (b"sysfs", b"sysfs", b"/sys"),
        (b"fuse.sshfs", b"host:/x", b"/sys/kernel/debug")]
    ns = w.k.obj("mnt_namespace", w.k.ns)
    assert [int(m) for m in fs.for_each_mount(w.k.prog, ns)] == [int(m) for m in fs.for_each_mount(ns)] == \
        [int(m) for m in mounts]


def test_for_each_mount_skips_cursors_and_reports_a_broken_list(world: World) -> None:
    k = world.k
    k.mount(0, 0, b"cursor")  # a cursor: no superblock
    assert len(list(fs.for_each_mount(k.prog))) == 4
    last = k.mounts[-1] + k.off("mount", "mnt_list")
    k.u64(last, k.mounts[1] + k.off("mount", "mnt_list"))  # loop back into the list
    with pytest.raises(ValidationError, match="cycle"):
        list(fs.for_each_mount(k.prog))


def test_inode_type() -> None:
    assert [fs.inode_type(m) for m in (0o100644, 0o40755, 0o20620, 0o60660, 0o10600, 0o140777, 0o120777, 0)] == \
        ["REG", "DIR", "CHR", "BLK", "FIFO", "SOCK", "LNK", "?"]
