"""Device-number helpers on the synthetic kernel: chrdevs[] ranges with their cdev (from the
char_device_struct, or from cdev_map's probes for a range added by cdev_add()) and its
file_operations symbol, major_names[], MAJOR/MINOR/MKDEV, and a looping hash chain that ends."""

from __future__ import annotations

from kcrash.helpers.linux.device import (
    MAJOR,
    MINOR,
    MKDEV,
    for_each_registered_blkdev,
    for_each_registered_chrdev,
)
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
