"""
kcrash.helpers.linux.fs
=======================

Files, paths and mounts (``include/linux/fs.h``, ``include/linux/fdtable.h``, ``fs/mount.h``,
``fs/d_path.c``) under drgn's names: :func:`d_path` of a ``struct path`` across mount points,
:func:`for_each_file` over a task's descriptor table (``files->fdt``: ``max_fds``, ``fd[]`` and the
``open_fds`` bitmap), :func:`for_each_mount` of a mount namespace (the ``list`` of ``struct mount``
or, since v6.8, the rbtree ``mounts``, probed), :func:`mount_src`, :func:`mount_dst` and
:func:`mount_fstype`. :func:`file_path` names a file as ``/proc/PID/fd`` does (``pipe:[ino]``,
``socket:[ino]``) where :func:`d_path` gives drgn's ``[pipefs]``; :func:`inode_type` is the
``S_IFMT`` name of a mode. Every walk is bounded (a dentry or mount cycle, a huge ``max_fds``).
Sockets are :mod:`~kcrash.helpers.linux.net`.
"""

from __future__ import annotations

from collections.abc import Iterator

from kcrash.errors import SymbolNotFoundError, ValidationError
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.rbtree import rbtree_inorder_for_each_entry
from kcrash.types.object import Object, container_of
from kcrash.types.program import Program

__all__ = [
    "d_path",
    "fget",
    "file_path",
    "for_each_file",
    "for_each_mount",
    "inode_type",
    "mount_dst",
    "mount_fstype",
    "mount_src",
]

#: most names one path is built of; a longer chain is a dentry or mount cycle
_PATH_DEPTH = 4096
#: ``sysctl_nr_open`` can be at most about 2**30 (``fs/file.c``); beyond 2**24 fds we call it damage
_MAX_FDS = 1 << 24
#: the ``fd[]`` array is read in one piece up to this many entries, else entry by entry
_FD_ARRAY_READ = 1 << 16
#: most mounts one namespace walk yields
_MOUNT_LIMIT = 1 << 20
#: ``include/uapi/linux/stat.h``
_S_IFMT = 0o170000
_S_IFMT_NAMES = {0o140000: "SOCK", 0o120000: "LNK", 0o100000: "REG", 0o060000: "BLK", 0o040000: "DIR",
                 0o020000: "CHR", 0o010000: "FIFO"}


def _mount_of(vfsmnt: Object) -> Object:
    return container_of(vfsmnt, "struct mount", "mnt")


def _path_args(args: tuple[Object, ...]) -> tuple[Object, Object]:
    # (struct mount *, struct dentry *) of d_path(path) or d_path(vfsmnt, dentry)
    if len(args) == 2:
        return _mount_of(args[0]), args[1].read_()
    if len(args) == 1:
        path = args[0]
        return _mount_of(path.mnt), path.dentry.read_()
    raise TypeError(f"d_path() takes a struct path or (vfsmnt, dentry), not {len(args)} arguments")


def d_path(*args: Object) -> bytes:
    """Return the full path of a dentry in a mount, like drgn's ``d_path()``.

    Names up to each mount's root, crossing to the mount point in the parent mount (``fs/d_path.c``
    ``prepend_path()``). A dentry whose ``d_op`` has ``d_dname`` (pipes, sockets, anonymous inodes)
    is ``[fstype]``.

    :param args: ``struct path`` (or ``struct path *``), or ``struct vfsmount *`` and ``struct dentry *``
    :return: the path
    :raises ValidationError: if the chain of dentries and mounts does not end (a cycle)

    >>> d_path(prog["init_task"].fs.pwd)
    b'/'
    """
    mount, dentry = _path_args(args)
    d_op = dentry.d_op.read_()
    if int(d_op) and int(d_op.d_dname):
        return b"[" + dentry.d_inode.i_sb.s_type.name.string_() + b"]"
    return _prepend_path(mount, dentry)


def _prepend_path(mount: Object, dentry: Object) -> bytes:
    parts: list[bytes] = []
    for _ in range(_PATH_DEPTH):
        if int(dentry) == int(mount.mnt.mnt_root):
            parent_mount = mount.mnt_parent.read_()
            if int(parent_mount) == int(mount):
                return b"/" + b"/".join(reversed(parts))
            dentry, mount = mount.mnt_mountpoint.read_(), parent_mount
            continue
        parent = dentry.d_parent.read_()
        if int(parent) == int(dentry):
            return b"/" + b"/".join(reversed(parts))
        parts.append(dentry.d_name.name.string_())
        dentry = parent
    raise ValidationError(f"path of dentry {int(dentry):#x} is longer than {_PATH_DEPTH} steps (a cycle?)")


def _symbol_or_zero(prog: Program, name: str) -> int:
    try:
        return prog.symbol_address(name)
    except SymbolNotFoundError:
        return 0


def file_path(file: Object) -> bytes:
    """Return the name ``/proc/PID/fd/N`` links to for a file.

    :func:`d_path`, but ``pipe:[ino]`` and ``socket:[ino]`` as ``pipefs_dname()``/``sockfs_dname()``
    make them, ``anon_inode:NAME`` as ``anon_inodefs_dname()`` does; other ``d_dname`` users stay
    ``[fstype]``.

    :param file: ``struct file *``
    :return: the name
    :raises ValidationError: if the chain of dentries and mounts does not end (a cycle)

    >>> [file_path(f) for _, f in for_each_file(prog["init_task"].address_of_()) if f]
    []
    """
    dentry = file.f_path.dentry.read_()
    d_op = dentry.d_op.read_()
    dname = int(d_op.d_dname) if int(d_op) else 0
    if not dname:
        return d_path(file.f_path)
    prog = file.prog_
    ino = int(dentry.d_inode.i_ino)
    for symbol, prefix in (("pipefs_dname", b"pipe"), ("sockfs_dname", b"socket")):
        if dname == _symbol_or_zero(prog, symbol):
            return prefix + b":[" + str(ino).encode() + b"]"
    if dname == _symbol_or_zero(prog, "anon_inodefs_dname"):
        return b"anon_inode:" + dentry.d_name.name.string_()
    return d_path(file.f_path)


def inode_type(mode: int) -> str:
    """Return the file type of an ``i_mode`` as crash and drgn name it.

    :param mode: ``inode->i_mode``
    :return: ``REG``, ``DIR``, ``CHR``, ``BLK``, ``FIFO``, ``SOCK``, ``LNK`` (``?`` for none of them)

    >>> inode_type(0o100644)
    'REG'
    """
    return _S_IFMT_NAMES.get(mode & _S_IFMT, "?")


def _fd_table(task: Object) -> tuple[Object, int] | None:
    # (fdt, max_fds) of a task, None for a task without files (a kernel thread that dropped them)
    files = task.files.read_()
    if not int(files):
        return None
    fdt = files.fdt.read_()
    max_fds = int(fdt.max_fds)
    if not 0 <= max_fds <= _MAX_FDS:
        raise ValidationError(f"task {int(task):#x}: implausible max_fds {max_fds}")
    return fdt, max_fds


def _open_fds(prog: Program, fdt: Object, max_fds: int) -> Iterator[int]:
    # the set bits of the open_fds bitmap, read in one piece
    bitmap = prog.read(int(fdt.open_fds), (max_fds + 7) // 8)
    value = int.from_bytes(bitmap, "little")
    while value:
        lowest = value & -value
        yield lowest.bit_length() - 1
        value ^= lowest


def for_each_file(task: Object) -> Iterator[tuple[int, Object]]:
    """Iterate over the open descriptors of a task and their files, like drgn's ``for_each_file()``.

    Every set bit of ``task->files->fdt->open_fds``, so a descriptor reserved but not yet installed
    (a blocked ``accept()``) comes with a NULL file; a task without ``files`` has none.

    :param task: ``struct task_struct *``
    :return: an iterator of ``(fd, struct file *)``
    :raises ValidationError: if ``max_fds`` is implausible

    >>> from kcrash.helpers.linux.sched import find_task_or_none
    >>> [fd for fd, file in for_each_file(find_task_or_none(prog, 1))]
    [0, 1, 2, 10]
    """
    table = _fd_table(task)
    if table is None:
        return
    fdt, max_fds = table
    prog = task.prog_
    file_type = prog.pointer_type("struct file")
    fds = int(fdt.fd)
    array = prog.read(fds, 8 * max_fds) if max_fds <= _FD_ARRAY_READ else None
    for fd in _open_fds(prog, fdt, max_fds):
        pointer = int.from_bytes(array[8 * fd:8 * fd + 8], "little") if array is not None \
            else prog.read_u64(fds + 8 * fd)
        yield fd, Object(prog, file_type, pointer)


def fget(task: Object, fd: int) -> Object:
    """Return the file of descriptor ``fd`` of a task (``task->files->fdt->fd[fd]``), like ``fget()``.

    :param task: ``struct task_struct *``
    :param fd: the descriptor
    :return: ``struct file *``, NULL when it is not open
    :raises FaultError: if the task's file table cannot be read

    >>> from kcrash.helpers.linux.sched import find_task_or_none
    >>> d_path(fget(find_task_or_none(prog, 1), 0).f_path)
    b'/dev/console'
    """
    prog = task.prog_
    file_type = prog.pointer_type("struct file")
    table = _fd_table(task)
    if table is None or not 0 <= fd < table[1]:
        return Object(prog, file_type, 0)
    return Object(prog, file_type, prog.read_u64(int(table[0].fd) + 8 * fd))


def _mounts(ns: Object) -> Iterator[Object]:
    # Since Linux kernel commit 2eea9ce4310d (v6.8) a namespace keeps its mounts in an rbtree
    # ``mounts`` (linked by ``mnt_node``); before, in the list ``list`` (linked by ``mnt_list``).
    # Test ``list`` first: before that commit ``struct mnt_namespace`` had no ``mounts`` of that kind.
    if ns.type_.strip_typedefs().type.strip_typedefs().has_member("list"):
        walk = list_for_each_entry("struct mount", ns.list, "mnt_list", limit=_MOUNT_LIMIT)
    else:
        walk = rbtree_inorder_for_each_entry("struct mount", ns.mounts, "mnt_node", limit=_MOUNT_LIMIT)
    yield from walk
    if walk.truncated is not None:
        raise ValidationError(f"mounts of namespace {int(ns):#x}: {walk.truncated}")


def for_each_mount(prog: Program | Object, ns: Object | None = None) -> Iterator[Object]:
    """Iterate over the mounts of a mount namespace, in the namespace's order, like drgn's ``for_each_mount()``.

    List cursors (v5.8 to v6.8: entries without a superblock) are skipped, as drgn does.

    :param prog: the program, or (as drgn takes it) the ``struct mnt_namespace *`` itself
    :param ns: ``struct mnt_namespace *`` (default: ``init_task.nsproxy->mnt_ns``)
    :return: an iterator of ``struct mount *``
    :raises ValidationError: if the list or tree is damaged (after the mounts read so far)

    >>> [mount_dst(m) for m in for_each_mount(prog)][:2]
    [b'/', b'/proc']
    """
    if isinstance(prog, Object):
        ns = prog
        prog = ns.prog_
    if ns is None:
        ns = prog["init_task"].nsproxy.mnt_ns.read_()
    for mount in _mounts(ns):
        if int(mount.mnt.mnt_sb):
            yield mount


def mount_src(mnt: Object) -> bytes:
    """Return the device name a mount was made from (``mnt->mnt_devname``).

    :param mnt: ``struct mount *``
    :return: the device name

    >>> [mount_src(m) for m in for_each_mount(prog)][:2]
    [b'rootfs', b'proc']
    """
    return mnt.mnt_devname.string_()


def mount_dst(mnt: Object) -> bytes:
    """Return the path a mount is mounted on (:func:`d_path` of its root).

    :param mnt: ``struct mount *``
    :return: the mount point
    :raises ValidationError: if the chain of dentries and mounts does not end (a cycle)

    >>> mount_dst(next(for_each_mount(prog)))
    b'/'
    """
    return d_path(mnt.mnt.address_of_(), mnt.mnt.mnt_root)


def mount_fstype(mnt: Object) -> bytes:
    """Return the filesystem type of a mount.

    That is ``sb->s_type->name``, or ``type.subtype`` when the superblock has a subtype (FUSE).

    :param mnt: ``struct mount *``
    :return: the type's name

    >>> [mount_fstype(m) for m in for_each_mount(prog)][:2]
    [b'rootfs', b'proc']
    """
    sb = mnt.mnt.mnt_sb.read_()
    fstype = sb.s_type.name.string_()
    if int(sb.s_subtype):
        subtype = sb.s_subtype.string_()
        if subtype:
            fstype += b"." + subtype
    return fstype

