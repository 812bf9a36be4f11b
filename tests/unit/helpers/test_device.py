"""Device-number helpers on the synthetic kernel: chrdevs[] ranges with their cdev (from the
char_device_struct, or from cdev_map's probes for a range added by cdev_add()) and its
file_operations symbol, major_names[], MAJOR/MINOR/MKDEV, a looping hash chain that ends, and the
disks of block_class (found through class_kset; partitions skipped) with the in-flight counts of a
bio-based disk summed over the CPUs. (The lab guests have no disk: this is the only test of a
non-empty disk list.)"""

from __future__ import annotations

from kcrash.helpers.linux.device import (
    MAJOR,
    MINOR,
    MKDEV,
    disk_in_flight,
    for_each_disk,
    for_each_registered_blkdev,
    for_each_registered_chrdev,
)
from kcrash.types.object import Object
from support.state_kernel import BASE, CHRDEVS, sample


def test_char_ranges_with_cdev_and_operations() -> None:
    k, named = sample()
    found = [(c.major, c.baseminor, c.minorct, c.name, c.cdev, c.ops_name) for c in for_each_registered_chrdev(k.prog)]
    assert found == [(1, 0, 256, "mem", named["mem"], "memory_fops"), (4, 1, 63, "tty", named["tty"], "tty_fops"),
                     (13, 0, 1024, "input", named["input"], "tty_fops")]  # input's cdev through cdev_map


def test_block_majors() -> None:
    k, named = sample()
    assert [(b.major, b.name, b.address) for b in for_each_registered_blkdev(k.prog)] == [
        (259, "blkext", named["blkext"])]


def test_dev_t() -> None:
    assert MKDEV(259, 7) == 259 << 20 | 7
    assert (MAJOR(MKDEV(259, 7)), MINOR(MKDEV(259, 7))) == (259, 7)


def test_a_looping_chain_ends() -> None:
    k, _ = sample()
    head = CHRDEVS + 8 * 4
    node = int.from_bytes(k.memory[head - BASE:][:8], "little")
    k.u64(node, node)  # tty's char_device_struct is its own next
    assert [c.name for c in for_each_registered_chrdev(k.prog)] == ["mem", "tty", "input"]


def test_disks_of_block_class() -> None:
    k, named = sample()
    disks = list(for_each_disk(k.prog))
    assert [(d.address, d.name, d.major, d.mq, d.in_flight, d.fops_name) for d in disks] == [
        (named["vda"], "vda", 253, True, None, "tty_fops"), (named["ram0"], "ram0", 1, False, (2, 3), "tty_fops")]


def test_disk_in_flight_sums_the_cpus() -> None:
    k, named = sample()
    disk = Object(k.prog, k.prog.pointer_type("struct gendisk"), named["ram0"])
    assert disk_in_flight(disk) == (2, 3)
    k.u64(int(disk.part0) + 16, 0)  # no per-CPU stats
    assert disk_in_flight(disk) is None
