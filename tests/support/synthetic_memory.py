"""The memory of a synthetic kernel (tests/support/*_kernel.py): zero-filled regions at fixed
kernel addresses, the SegmentMap a Program reads them through, and little-endian writers."""

from __future__ import annotations

from collections.abc import Callable

from kcrash.memory import SegmentMap


class SyntheticMemory:
    """``regions``: start address -> its bytes; ``put``/``u32``/``u64`` write anywhere in them."""

    def __init__(self, sizes: dict[int, int]) -> None:
        self.regions = {start: bytearray(size) for start, size in sizes.items()}

    def segments(self) -> SegmentMap:
        """A SegmentMap of the regions (virtual addresses) that reads what is written later."""
        segments = SegmentMap()
        for start, data in self.regions.items():
            segments.add_segment(start, len(data), _reader(data, start), physical=False)
        return segments

    def put(self, addr: int, data: bytes) -> None:
        for start, region in self.regions.items():
            if start <= addr and addr + len(data) <= start + len(region):
                region[addr - start:addr - start + len(data)] = data
                return
        raise AssertionError(f"{addr:#x}+{len(data)} is in no region")

    def u32(self, addr: int, value: int) -> None:
        self.put(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def u64(self, addr: int, value: int) -> None:
        self.put(addr, (value & (1 << 64) - 1).to_bytes(8, "little"))


def _reader(data: bytearray, start: int) -> Callable[[int, int], bytes]:
    return lambda a, n: bytes(data[a - start:a - start + n])
