"""memory.translate.arm64: walks over synthetic AArch64 tables — 39/48/52-bit (LPA2) with 4 KiB pages,
16 and 64 KiB granules, blocks, 52-bit output addresses, invalid and reserved descriptors."""

from __future__ import annotations

import pytest

from kcrash.errors import FaultError
from kcrash.memory.translate.arm64 import Arm64PageTables, arm64_levels
from support.arm64_tables import Arm64TableBuilder
from support.pagetables import PhysImage


def _tables(b: Arm64TableBuilder, image: PhysImage) -> Arm64PageTables:
    return Arm64PageTables(image.read, b.root, va_bits=b.va_bits, page_shift=b.page_shift, kernel=b.kernel)


def _kva(va_bits: int, offset: int) -> int:
    # an upper-half address: bits 63:va_bits set
    return ((1 << 64) - (1 << va_bits)) + offset


@pytest.mark.parametrize(("va_bits", "page_shift", "levels"), [
    (39, 12, 3), (48, 12, 4), (52, 12, 5), (47, 14, 3), (48, 14, 4), (52, 14, 4),
    (42, 16, 2), (48, 16, 3), (52, 16, 3)])
def test_page_walks(va_bits: int, page_shift: int, levels: int) -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=va_bits, page_shift=page_shift)
    assert arm64_levels(va_bits, page_shift) == levels == b.levels
    page = 1 << page_shift
    # addresses that use the top index's highest entry, a middle one and the lowest
    vas = [_kva(va_bits, page * 3), _kva(va_bits, (1 << va_bits) - page),
           _kva(va_bits, (1 << (va_bits - 1)) + 5 * page)]
    pas = [0x8000_0000 + i * 7 * page for i in range(len(vas))]
    for va, pa in zip(vas, pas, strict=True):
        b.map(va, pa)
        image.write(pa + 0x10, va.to_bytes(8, "little"))
    t = _tables(b, image)
    assert t.levels == levels
    for va, pa in zip(vas, pas, strict=True):
        assert t.translate(va + 0x10) == (pa + 0x10, page)
        walk = t.walk(va + 0x18)
        assert (walk.physical, walk.page_size, len(walk.entries)) == (pa + 0x18, page, levels)
        assert walk.entries[-1].level == "PTE" and "AF" in walk.entries[-1].flags
        assert image.read(t.translate(va + 0x10)[0], 8) == va.to_bytes(8, "little")


@pytest.mark.parametrize(("va_bits", "page_shift", "depth"), [(48, 12, 1), (48, 12, 2), (39, 12, 1), (52, 12, 1),
                                                               (48, 16, 1), (47, 14, 1)])
def test_block_mappings(va_bits: int, page_shift: int, depth: int) -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=va_bits, page_shift=page_shift)
    size = 1 << b.shifts[depth]
    va = _kva(va_bits, 4 * size)
    pa = 8 * size
    b.map(va, pa, level_size=size)
    t = _tables(b, image)
    assert t.translate(va + size - 8) == (pa + size - 8, size)
    walk = t.walk(va + 0x1234)
    assert (walk.physical, walk.page_size, len(walk.entries)) == (pa + 0x1234, size, depth + 1)


def test_lpa2_output_bits_51_50_and_tables_above_48_bits() -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=52, page_shift=12, table_base=(1 << 51) | (1 << 49))
    va = _kva(52, 0x123456789000)
    pa = (1 << 51) | (1 << 50) | (1 << 48) | 0xABCDE000
    leaf = b.map(va, pa)
    assert image.read(leaf, 8)[1] & 0x3 == 0x3  # bits 9:8 carry PA 51:50
    t = _tables(b, image)
    assert t.lpa2
    assert t.translate(va + 8) == (pa + 8, 4096)


def test_64k_output_bits_51_48() -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=52, page_shift=16)
    va = _kva(52, 0x7_0000_0000)
    pa = (0xA << 48) | 0x1234_0000
    b.map(va, pa)
    t = _tables(b, image)
    assert not t.lpa2
    assert t.translate(va + 0x100) == (pa + 0x100, 1 << 16)


def test_48_bit_4k_ignores_bits_9_8() -> None:
    # without LPA2, bits 9:8 are shareability: never address bits
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=48, page_shift=12)
    va = _kva(48, 0x4000)
    leaf = b.map(va, 0x9000_0000, attrs=1 << 10 | 0x300)
    assert image.read(leaf, 8)[1] & 0x3 == 0x3
    assert _tables(b, image).translate(va) == (0x9000_0000, 4096)


def test_user_root() -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=48, page_shift=12, kernel=False)
    b.map(0x4000_0000, 0x7000_0000)
    t = _tables(b, image)
    assert t.translate(0x4000_0008) == (0x7000_0008, 4096)
    assert t.walk(_kva(48, 0x4000_0000)).reason == "not a 48-bit user (TTBR0) address"


def test_faults() -> None:
    image = PhysImage()
    b = Arm64TableBuilder(image, va_bits=48, page_shift=12)
    va = _kva(48, 0x10_0000)
    leaf = b.map(va, 0x9000_0000)
    t = _tables(b, image)
    # a non-canonical address (bit 48 clear in the upper half)
    walk = t.walk(va ^ (1 << 50))
    assert walk.physical is None and walk.entries == () and "48-bit kernel" in str(walk.reason)
    # a neighbour with no PTE
    walk = t.walk(va + 4096)
    assert walk.physical is None and walk.reason == "PTE entry not valid" and len(walk.entries) == 4
    with pytest.raises(FaultError, match="not valid"):
        t.translate(va + 4096)
    # neighbours with no PMD (next 1 GiB), no PUD entry's table (next 512 GiB)
    assert t.walk(va + (1 << 30)).reason == "PUD entry not valid"
    assert t.walk(va + (1 << 39)).reason == "PGD entry not valid"
    # a last-level descriptor of type 0b01 is reserved
    b.write_leaf(leaf, 0x9000_0000 | 1 << 10 | 0b01)
    t = _tables(b, image)
    assert t.walk(va).reason == "PTE entry reserved descriptor type at the last level"
    with pytest.raises(FaultError):
        t.translate(va)


def test_unreadable_table_is_a_physical_fault() -> None:
    def read(address: int, size: int) -> bytes:
        raise FaultError(address, True, "not in the dump")
    t = Arm64PageTables(read, 0x4000_0000, va_bits=48)
    with pytest.raises(FaultError, match="PGD table not readable") as info:
        t.translate(_kva(48, 0))
    assert info.value.physical


def test_bad_geometry() -> None:
    with pytest.raises(ValueError, match="KiB"):
        Arm64PageTables(PhysImage().read, 0, page_shift=13)
    with pytest.raises(ValueError, match="bits"):
        Arm64PageTables(PhysImage().read, 0, va_bits=56)
