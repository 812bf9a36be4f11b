"""
kcrash.live.memory
==================

The live target as a memory source. :class:`LiveDump` has the shape of a
:class:`~kcrash.dumps.base.DumpFormat` (``segments()``, ``notes()``, ``vmcoreinfo_or_none()``,
``describe()``), so :func:`kcrash.memory.open_kernel_memory` builds the kernel address space of a
running kernel exactly as it does for a dump, and nothing above the memory layer knows the
difference. Two segments are registered:

* **virtual**, the kernel half (``0xffff800000000000`` and up), read with ``m`` through the stub:
  QEMU translates through the stopped vCPU's page tables, which map the whole kernel. One packet
  per 2 KiB, no page walk of ours.
* **physical**, ``[0, 2**52)``, read with ``m`` after QEMU's ``Qqemu.PhyMemMode:1`` (absent on kgdb:
  then page-table walks of user address spaces are unavailable and say so).

Reads are cached in aligned blocks while the target is stopped; :meth:`LiveDump.invalidate` (called
on every resume) drops the cache, so reads are coherent with the stopped machine. KASLR: the
VMCOREINFO comes from QMP when given (see :mod:`kcrash.live.qmp`), otherwise
:func:`find_vmcoreinfo_in_memory` locates the kernel's VMCOREINFO page in guest physical memory and
validates it against the kernel text found by probing the kernel-image mapping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from kcrash.dumps.base import DumpDescription, MemorySegment, PageCounts
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.errors import FaultError, LiveTargetError

if TYPE_CHECKING:
    from kcrash.dumps.notes import Note
    from kcrash.live.gdbremote.client import GdbRemoteClient

__all__ = ["KERNEL_HALF", "LiveDump", "LiveMemoryCounters", "find_kernel_text", "find_vmcoreinfo_in_memory",
           "parse_mtree_ram"]

#: the lowest kernel-half virtual address (4-level paging; 5-level kernels start lower but map
#: everything kcrash reads above it)
KERNEL_HALF = 0xFFFF800000000000
_PHYS_LIMIT = 1 << 52
_START_KERNEL_MAP = 0xFFFFFFFF80000000
_START_KERNEL = 0xFFFFFFFF81000000
_PMD_SIZE = 1 << 21


@dataclass(slots=True)
class LiveMemoryCounters:
    """Cache statistics of a live memory source."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class LiveDump:
    """A running kernel behind a gdb stub, shaped like a dump for :mod:`kcrash.memory`."""

    format_name: ClassVar[str] = "gdb-remote"

    def __init__(self, client: GdbRemoteClient, vmcoreinfo: VmcoreInfo | None, *,
                 physical: bool | None = None) -> None:
        self.client = client
        self.path = Path(client.transport.description)
        self.vmcoreinfo = vmcoreinfo
        self._cache: dict[tuple[bool, int], bytes] = {}
        self._block = 1 << (client.max_read.bit_length() - 1)
        self._phys_mode = False
        self.counters = LiveMemoryCounters()
        self.has_physical = self._probe_physical() if physical is None else physical

    @property
    def machine(self) -> str:
        """Return ``"x86_64"``: the only guest architecture this target supports."""
        return "x86_64"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """A live target is never a file."""
        return False

    def _probe_physical(self) -> bool:
        if not self.client.set_physical_mode(True):
            return False
        self.client.set_physical_mode(False)
        return True

    def segments(self) -> Sequence[MemorySegment]:
        """The kernel-half virtual segment and, with QEMU, all of physical memory."""
        segs = [MemorySegment(KERNEL_HALF, (1 << 64) - KERNEL_HALF, self.read_virtual, False)]
        if self.has_physical:
            segs.append(MemorySegment(0, _PHYS_LIMIT, self.read_physical, True))
        return segs

    def notes(self) -> Sequence[Note]:
        """A live target has no ELF notes (registers come from the stub)."""
        return []

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return the VMCOREINFO given at attach time (QMP or found in memory)."""
        return self.vmcoreinfo

    def describe(self) -> DumpDescription:
        """Describe the connection."""
        return DumpDescription(str(self.path), self.format_name, (), PageCounts(4096))

    def close(self) -> None:
        """Nothing to release (the session owns the connection)."""

    def invalidate(self) -> None:
        """Drop cached memory (the target is about to run)."""
        self._cache.clear()
        self.counters.invalidations += 1

    def read_virtual(self, address: int, size: int) -> bytes:
        """Read kernel virtual memory through the stub."""
        return self._read(address, size, physical=False)

    def read_physical(self, address: int, size: int) -> bytes:
        """Read guest physical memory (QEMU physical-memory mode)."""
        return self._read(address, size, physical=True)

    def _read(self, address: int, size: int, *, physical: bool) -> bytes:
        block = self._block
        first = address & ~(block - 1)
        parts = [self._get_block(physical, base) for base in range(first, address + size, block)]
        data = b"".join(parts)
        return data[address - first:address - first + size]

    def _get_block(self, physical: bool, base: int) -> bytes:
        key = (physical, base)
        data = self._cache.get(key)
        if data is not None:
            self.counters.hits += 1
            return data
        self.counters.misses += 1
        self._set_mode(physical)
        data = self.client.read_memory(base, self._block, physical=physical)
        self._cache[key] = data
        return data

    def _set_mode(self, physical: bool) -> None:
        if physical != self._phys_mode:
            if not self.client.set_physical_mode(physical) and physical:
                raise FaultError(0, True, "the stub cannot read physical memory")
            self._phys_mode = physical

    def read_virtual_uncached(self, address: int, size: int) -> bytes:
        """Read virtual memory of the selected vCPU (also user space) without caching."""
        self._set_mode(False)
        return self.client.read_memory(address, size)


def find_kernel_text(client: GdbRemoteClient) -> int | None:
    """Return the virtual address of ``_text`` by probing the kernel-image mapping in 2 MiB steps
    (everything below ``_text`` in ``__START_KERNEL_map`` is unmapped after boot), or None."""
    for slot in range(512):
        vaddr = _START_KERNEL_MAP + slot * _PMD_SIZE
        try:
            client.read_memory(vaddr, 1)
        except FaultError:
            continue
        return vaddr
    return None


def find_vmcoreinfo_in_memory(dump: LiveDump, *, limit: int = 1 << 30) -> VmcoreInfo:
    """Find the kernel's VMCOREINFO page (``OSRELEASE=`` at a page start, written at boot by
    ``crash_save_vmcoreinfo_init``) in guest RAM, scanning down from the top, and validate it: its
    ``KERNELOFFSET`` must match the kernel text found by probing. RAM ranges come from QEMU's
    ``info mtree -f`` (monitor command through the stub); without it, ``[0, limit)`` is scanned."""
    if not dump.has_physical:
        raise LiveTargetError("no VMCOREINFO: give a QMP socket (--qmp), the stub cannot read physical memory")
    text = find_kernel_text(dump.client)
    for page in _pages_top_down(_ram_ranges(dump.client, limit)):
        try:
            if dump.read_physical(page, 10) != b"OSRELEASE=":
                continue
            info = parse_vmcoreinfo(dump.read_physical(page, 4096).split(b"\0", 1)[0])
        except FaultError:
            continue
        if _matches(info, text):
            return info
    raise LiveTargetError("VMCOREINFO not found in guest memory; give a QMP socket (--qmp)")


def _matches(info: VmcoreInfo, text: int | None) -> bool:
    offset = info.kerneloffset
    if offset is None or info.osrelease is None:
        return False
    return text is None or _START_KERNEL + offset == text


_MTREE_RAM = re.compile(r"^\s*([0-9a-f]{16})-([0-9a-f]{16}) \(prio -?\d+, ram\)", re.MULTILINE)


def parse_mtree_ram(text: str) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` RAM ranges of the first flat view in QEMU's ``info mtree -f``."""
    first = text.split("FlatView #1", 1)[0]
    return [(int(a, 16), int(b, 16) + 1) for a, b in _MTREE_RAM.findall(first)]


def _ram_ranges(client: GdbRemoteClient, limit: int) -> list[tuple[int, int]]:
    try:
        ranges = parse_mtree_ram(client.monitor("info mtree -f"))
    except LiveTargetError:
        ranges = []
    return ranges or [(0, limit)]


def _pages_top_down(ranges: list[tuple[int, int]]) -> Iterator[int]:
    for start, end in sorted(ranges, reverse=True):
        first = (start + 4095) & ~4095
        yield from range((end & ~4095) - 4096, first - 1, -4096)
