"""
kcrash.helpers.linux.device
===========================

Registered device numbers and disks, as crash's ``dev`` and ``dev -d`` list them: character
device ranges (``fs/char_dev.c``: the ``chrdevs[CHRDEV_MAJOR_HASH_SIZE]`` hash of
``struct char_device_struct``, whose ``cdev`` is NULL for ranges registered with
``register_chrdev_region()`` + ``cdev_add()``, found then in ``cdev_map``'s ``struct probe``
chains), block majors (``block/genhd.c``: ``major_names[BLKDEV_MAJOR_HASH_SIZE]`` of
``struct blk_major_name``) and disks (``struct gendisk`` behind every whole-disk device of
``block_class``, ``include/linux/blkdev.h``). These globals are static and have no BTF variable
entry: their addresses come from kallsyms and their types from the BTF structs. Named as drgn's
``drgn.helpers.linux.device`` and ``drgn.helpers.linux.block``. Walks are bounded. Requests in
flight are read where the kernel counts them (bio-based disks' per-CPU ``disk_stats``); blk-mq
queues' busy tags are not walked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import FaultError, TypeLookupError
from kcrash.helpers.linux.cpumask import for_each_possible_cpu
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.timer import symbol_text
from kcrash.types.object import Object, container_of, offsetof
from kcrash.types.percpu import per_cpu_offset
from kcrash.types.program import Program

__all__ = [
    "MAJOR",
    "MINOR",
    "MKDEV",
    "BlockMajor",
    "CharDevice",
    "Disk",
    "disk_in_flight",
    "for_each_disk",
    "for_each_registered_blkdev",
    "for_each_registered_chrdev",
]

#: ``include/linux/fs.h`` CHRDEV_MAJOR_HASH_SIZE and ``include/linux/blkdev.h`` BLKDEV_MAJOR_HASH_SIZE
_MAJOR_HASH_SIZE = 255
_MINORBITS = 20
_MAX_CHAIN = 1 << 16
_MAX_DEVICES = 1 << 20
_MASK64 = (1 << 64) - 1


def MAJOR(dev: int) -> int:
    """Return the major number of a kernel ``dev_t``, like ``MAJOR(dev)`` (``include/linux/kdev_t.h``).

    :param dev: a kernel ``dev_t`` (``MINORBITS`` = 20)
    :return: the major number

    >>> MAJOR(0x10300007)
    259
    """
    return dev >> _MINORBITS


def MINOR(dev: int) -> int:
    """Return the minor number of a kernel ``dev_t``, like ``MINOR(dev)`` (``include/linux/kdev_t.h``).

    :param dev: a kernel ``dev_t``
    :return: the minor number

    >>> MINOR(0x10300007)
    7
    """
    return dev & ((1 << _MINORBITS) - 1)


def MKDEV(major: int, minor: int) -> int:
    """Return a kernel ``dev_t``, like ``MKDEV(major, minor)`` (``include/linux/kdev_t.h``).

    :param major: the major number
    :param minor: the minor number
    :return: ``major << MINORBITS | minor``

    >>> hex(MKDEV(259, 7))
    '0x10300007'
    """
    return major << _MINORBITS | minor


@dataclass(frozen=True, slots=True)
class CharDevice:
    """A registered character device range (``struct char_device_struct`` in ``chrdevs[]``, ``fs/char_dev.c``).

    :param major: its major number
    :param baseminor: its first minor
    :param minorct: how many minors it spans
    :param name: its name
    :param address: the ``struct char_device_struct *``
    :param cdev: its ``struct cdev *`` (0: none)
    :param ops: the cdev's ``struct file_operations *`` (0: none)
    :param ops_name: the symbol ``ops`` points to, None if unknown

    >>> [(c.major, c.name) for c in for_each_registered_chrdev(prog)][:2]
    [(1, 'mem'), (4, '/dev/vc/0')]
    """

    major: int
    baseminor: int
    minorct: int
    name: str
    address: int
    cdev: int
    ops: int
    ops_name: str | None


@dataclass(frozen=True, slots=True)
class BlockMajor:
    """A registered block device major (``struct blk_major_name`` in ``major_names[]``, ``block/genhd.c``).

    :param major: the major number
    :param name: its name
    :param address: the ``struct blk_major_name *``

    >>> [(b.major, b.name) for b in for_each_registered_blkdev(prog)]
    [(259, 'blkext')]
    """

    major: int
    name: str
    address: int


@dataclass(frozen=True, slots=True)
class Disk:
    """A disk (``struct gendisk``), as crash's ``dev -d`` lists it.

    :param address: the ``struct gendisk *``
    :param name: ``disk_name``
    :param major: ``major``
    :param first_minor: ``first_minor``
    :param minors: ``minors``
    :param queue: the ``struct request_queue *``
    :param fops_name: the ``block_device_operations`` symbol ``fops`` points to, None if unknown
    :param mq: whether the queue is blk-mq (``queue->mq_ops`` set)
    :param in_flight: ``(reads, writes)`` in flight where the kernel counts them (bio-based disks;
        None for blk-mq, whose in-flight requests are busy tags, not read here)

    >>> [(d.name, d.mq) for d in for_each_disk(prog)]
    []
    """

    address: int
    name: str
    major: int
    first_minor: int
    minors: int
    queue: int
    fops_name: str | None
    mq: bool
    in_flight: tuple[int, int] | None


def _hash_array(prog: Program, symbol: str, struct: str) -> Object:
    array = prog.array_type(prog.pointer_type(struct), _MAJOR_HASH_SIZE)
    return prog.object(array, prog.symbol_address(symbol))


def _chain(head: Object) -> Iterator[Object]:
    # A singly linked ->next chain, bounded against loops.
    seen: set[int] = set()
    node = head
    while int(node) and int(node) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(int(node))
        yield node
        node = node.next


def _cdev_from_map(prog: Program, major: int, dev: int) -> int:
    # register_chrdev_region() leaves cd->cdev NULL; cdev_add() maps the range in cdev_map
    # (drivers/base/map.c: probes[major % 255], each struct probe's data is the cdev).
    if "cdev_map" not in prog:
        return 0
    kobj_map = prog.object(prog.pointer_type("struct kobj_map"), prog.symbol_address("cdev_map"))
    for probe in _chain(kobj_map.probes[major % _MAJOR_HASH_SIZE]):
        if not int(probe.next):
            break  # the last probe is the base_probe sentinel of kobj_map_init()
        if int(probe.dev) == dev:
            return int(probe.data)
    return 0


def _char_device(prog: Program, cd: Object) -> CharDevice:
    major, baseminor = int(cd.major), int(cd.baseminor)
    cdev = int(cd.cdev) or _cdev_from_map(prog, major, MKDEV(major, baseminor))
    ops = int(prog.object("struct cdev", cdev).ops) if cdev else 0
    return CharDevice(major, baseminor, int(cd.minorct), cd.name.string_().decode(errors="replace"),
                      int(cd), cdev, ops, symbol_text(prog, ops))


def for_each_registered_chrdev(prog: Program) -> Iterator[CharDevice]:
    """Iterate over every registered character device range, as crash's ``dev`` lists them.

    By ``chrdevs[]`` hash bucket, then chain.

    :param prog: the program
    :return: an iterator of :class:`CharDevice`
    :raises FaultError: if ``chrdevs`` cannot be read

    >>> [(c.major, c.name) for c in for_each_registered_chrdev(prog)][:2]
    [(1, 'mem'), (4, '/dev/vc/0')]
    """
    for head in _hash_array(prog, "chrdevs", "struct char_device_struct"):
        for cd in _chain(head):
            yield _char_device(prog, cd)


def for_each_registered_blkdev(prog: Program) -> Iterator[BlockMajor]:
    """Iterate over every registered block device major (``register_blkdev()``, ``major_names[]``).

    :param prog: the program
    :return: an iterator of :class:`BlockMajor`
    :raises FaultError: if ``major_names`` cannot be read

    >>> [(b.major, b.name) for b in for_each_registered_blkdev(prog)]
    [(259, 'blkext')]
    """
    for head in _hash_array(prog, "major_names", "struct blk_major_name"):
        for name in _chain(head):
            yield BlockMajor(int(name.major), name.name.string_().decode(errors="replace"), int(name))


def _class_devices(prog: Program, class_address: int) -> Iterator[Object]:
    # class_for_each_device(): the class's subsys_private is found on class_kset's list (struct
    # class::p went away in commit 2df418cf4b72, v6.4); its klist_devices link device_private's
    # knode_class (commit 570d0200123f, v5.1; struct device's own before).
    kset = prog.object(prog.pointer_type("struct kset"), prog.symbol_address("class_kset"))
    for sp in list_for_each_entry("struct subsys_private", kset.list.address_of_(), "subsys.kobj.entry", limit=4096):
        if int(sp.member_("class")) != class_address:
            continue
        head = sp.klist_devices.k_list.address_of_()
        if prog.type("struct device_private").has_member("knode_class"):
            for priv in list_for_each_entry("struct device_private", head, "knode_class.n_node", limit=_MAX_DEVICES):
                yield priv.device
        else:
            yield from list_for_each_entry("struct device", head, "knode_class.n_node", limit=_MAX_DEVICES)
        return


def _whole_disk(prog: Program, device: Object) -> Object | None:
    # The gendisk of a whole-disk device, None for a partition.
    if prog.type("struct block_device").has_member("bd_device"):
        # Since commit 0d02129e76ed (v5.11) partitions are block_devices (bd_device embedded).
        bdev = container_of(device, "struct block_device", "bd_device")
        try:
            partno = int(bdev.__bd_flags.counter) & 0xFF  # since commit 1116b9fa15c0 (v6.10)
        except (AttributeError, TypeLookupError):
            partno = int(bdev.bd_partno)
        return bdev.bd_disk if partno == 0 else None
    part = container_of(device, "struct hd_struct", "__dev")
    return container_of(part, "struct gendisk", "part0") if int(part.partno) == 0 else None


def for_each_disk(prog: Program) -> Iterator[Disk]:
    """Iterate over every disk: the whole-disk devices of ``block_class``, as crash's ``dev -d`` lists them.

    Devices whose ``struct gendisk`` cannot be read are skipped.

    :param prog: the program
    :return: an iterator of :class:`Disk`
    :raises SymbolNotFoundError: if the kernel has no ``block_class``

    >>> [d.name for d in for_each_disk(prog)]
    []
    """
    for device in _class_devices(prog, prog.symbol_address("block_class")):
        try:
            disk = _whole_disk(prog, device)
        except FaultError:
            continue
        if disk is None:
            continue
        fops, queue = int(disk.fops), disk.queue
        mq = bool(int(queue.mq_ops)) if int(queue) else False
        yield Disk(int(disk), disk.disk_name.string_().decode(errors="replace"), int(disk.major),
                   int(disk.first_minor), int(disk.minors), int(queue), symbol_text(prog, fops), mq,
                   None if mq else disk_in_flight(disk))


def _disk_stats(disk: Object) -> Object:
    # The per-CPU struct disk_stats of the whole disk: part0->bd_stats since commit 0d02129e76ed
    # (v5.11, part0 a struct block_device *), part0.dkstats (struct hd_struct) before.
    part0 = disk.part0
    try:
        return part0.bd_stats
    except (AttributeError, TypeLookupError):
        return part0.dkstats


def disk_in_flight(disk: Object) -> tuple[int, int] | None:
    """Return the reads and writes in flight on a bio-based disk.

    ``disk_stats.in_flight[]`` (``local_t`` per CPU, ``include/linux/part_stat.h``) summed over the
    possible CPUs, as ``part_in_flight()`` does. blk-mq queues leave it at 0 (their in-flight
    requests are counted from the tags by ``blk_mq_in_flight()``).

    :param disk: ``struct gendisk *``
    :return: ``(reads, writes)``, None where the kernel has no such counter
    :raises FaultError: if the per-CPU statistics cannot be read

    >>> [disk_in_flight(prog.object("struct gendisk", d.address)) for d in for_each_disk(prog)]
    []
    """
    prog = disk.prog_
    stats_type = prog.find_type_or_none("struct disk_stats")
    if stats_type is None or not stats_type.has_member("in_flight"):
        return None
    stats = int(_disk_stats(disk))
    if not stats:
        return None
    at = stats + offsetof(stats_type, "in_flight")
    reads = writes = 0
    for cpu in for_each_possible_cpu(prog):
        raw = prog.read((at + per_cpu_offset(prog, cpu)) & _MASK64, 16)
        reads += int.from_bytes(raw[:8], "little", signed=True)
        writes += int.from_bytes(raw[8:], "little", signed=True)
    return reads, writes
