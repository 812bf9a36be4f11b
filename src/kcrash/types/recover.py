"""
kcrash.types.recover
====================

Data symbols recovered from the dump itself when its kallsyms holds text symbols only (a kernel
built without ``CONFIG_KALLSYMS_ALL``, e.g. Debian's 6.1 arm64): each is found by structure and
validated, never guessed from a version.

- ``__start_BTF``/``__stop_BTF``: a BTF header (magic 0xeB9F, version 1, a 24-byte header, the type
  and string sections in bounds and adjacent) in the read-only data between ``_etext`` and
  ``__init_begin`` (``.BTF`` is part of ``RO_DATA``), whose blob parses and holds ``struct
  task_struct``.
- ``init_task``: a ``struct task_struct`` in the image's data (from ``__init_begin`` up to the image's
  mapped end) whose ``comm`` is ``swapper/0``, ``pid`` 0, and whose ``tasks`` list is a consistent
  ring (each ``next->prev`` is the node) returning to it.
- ``modules``: a ``list_head`` in the image's data whose ring passes, besides itself, only through
  ``struct module.list`` members in the module area, each module with a valid ``state`` and a
  printable name. No module loaded: no ``modules`` (the list is empty anyway).

Per-CPU symbols (``__per_cpu_offset``, ``runqueues``, ``__entry_task``) are not recovered.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.base import DumpWarning
from kcrash.errors import CorruptDumpError, FaultError, KcrashError
from kcrash.memory.kernel import KernelMemory
from kcrash.memory.reader import MemoryReader
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.model import Type, TypeKind

__all__ = ["ImageData", "RecoveredSymbol", "find_btf_or_none", "find_init_task_or_none",
           "find_modules_head_or_none", "read_image_data", "recover_missing_symbols", "recover_symbols"]

_BTF_MAGIC = b"\x9f\xeb\x01"
_BTF_HEADER = struct.Struct("<HBBIIIII")
#: the largest vmlinux BTF accepted (Debian's are 2.5-6 MB)
_MAX_BTF = 64 << 20
#: how far past ``__init_begin`` the image's data is read (Debian arm64: 10 MB)
_DATA_SPAN = 96 << 20
_CHUNK = 1 << 16
_RING_LIMIT = 100_000
_MODULE_STATES = range(4)  # MODULE_STATE_LIVE, COMING, GOING, UNFORMED
_MODULE_NAME_LEN = 56
_MODULE_WINDOW = 2 << 30


@dataclass(frozen=True, slots=True)
class RecoveredSymbol:
    """A symbol found by structure: its name, address and how it was found and checked."""

    name: str
    address: int
    how: str


@dataclass(frozen=True, slots=True)
class ImageData:
    """Bytes of the image from ``base`` (unmapped pages read as zeros); ``end`` is past the last
    mapped chunk."""

    base: int
    data: bytes

    @property
    def end(self) -> int:
        return self.base + len(self.data)


def read_image_data(memory: MemoryReader, start: int, span: int = _DATA_SPAN) -> ImageData:
    """Read ``[start, start + span)`` in 64 KiB chunks, skipping unmapped ones (freed init memory);
    the result starts at the first mapped chunk and ends after the last."""
    chunks: list[tuple[int, bytes]] = []
    for address in range(start, start + span, _CHUNK):
        try:
            chunks.append((address, memory.read(address, _CHUNK)))
        except FaultError:
            continue
    if not chunks:
        return ImageData(start, b"")
    base = chunks[0][0]
    buf = bytearray(chunks[-1][0] + _CHUNK - base)
    for address, chunk in chunks:
        buf[address - base:address - base + _CHUNK] = chunk
    return ImageData(base, bytes(buf))


def find_btf_or_none(data: bytes, base: int) -> tuple[int, int, Btf] | None:
    """Find the vmlinux BTF in ``data`` (at address ``base``): ``(start, stop, parsed)`` or None.

    A candidate header must say version 1, flags 0, ``hdr_len`` 24, type section at 0, string
    section right after it, both inside ``data``; the blob must parse and define ``struct task_struct``.
    """
    pos = data.find(_BTF_MAGIC)
    while pos >= 0:
        found = _btf_at_or_none(data, pos)
        if found is not None:
            return base + pos, base + pos + found[0], found[1]
        pos = data.find(_BTF_MAGIC, pos + 1)
    return None


def _btf_at_or_none(data: bytes, pos: int) -> tuple[int, Btf] | None:
    if pos + _BTF_HEADER.size > len(data):
        return None
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = _BTF_HEADER.unpack_from(data, pos)
    if version != 1 or flags != 0 or hdr_len != _BTF_HEADER.size or type_off != 0 or str_off != type_len:
        return None
    size = hdr_len + str_off + str_len
    if not type_len > 0 or not str_len > 0 or size > _MAX_BTF or pos + size > len(data):
        return None
    try:
        btf = parse_btf(data[pos:pos + size], name="vmlinux")
        task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    except (CorruptDumpError, KcrashError, ValueError, IndexError, struct.error):
        return None
    if task is None or not task.has_member("comm") or not task.has_member("tasks"):
        return None
    return size, btf


def _offset(t: Type, path: str) -> int:
    return t.bit_offset_of(path) // 8


def find_init_task_or_none(image: ImageData, btf: Btf, read_u64: Callable[[int], int]) -> int | None:
    """Return the address of ``init_task`` in ``image`` (see the module doc), or None."""
    task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    if task is None:
        return None
    comm, pid, tasks = _offset(task, "comm"), _offset(task, "pid"), _offset(task, "tasks")
    pos = image.data.find(b"swapper/0\x00")
    while pos >= 0:
        start = pos - comm
        if start >= 0 and start + pid + 4 <= len(image.data) \
                and struct.unpack_from("<i", image.data, start + pid)[0] == 0:
            address = image.base + start
            if _ring_or_none(address + tasks, read_u64) is not None:
                return address
        pos = image.data.find(b"swapper/0\x00", pos + 1)
    return None


def _ring_or_none(head: int, read_u64: Callable[[int], int]) -> list[int] | None:
    # The nodes after ``head`` when ``next`` returns to it with every ``next->prev`` consistent.
    nodes: list[int] = []
    node = head
    try:
        for _ in range(_RING_LIMIT):
            nxt = read_u64(node)
            if nxt == 0 or read_u64(nxt + 8) != node:
                return None
            if nxt == head:
                return nodes
            nodes.append(nxt)
            node = nxt
    except FaultError:
        return None
    return None


def _module_ok(read: Callable[[int, int], bytes], module: int, state_off: int, name_off: int) -> bool:
    try:
        state = int.from_bytes(read(module + state_off, 4), "little")
        name = read(module + name_off, _MODULE_NAME_LEN)
    except FaultError:
        return False
    text = name.split(b"\0", 1)[0]
    return state in _MODULE_STATES and b"\0" in name and len(text) > 0 and all(33 <= c < 127 for c in text)


def find_modules_head_or_none(image: ImageData, btf: Btf, memory: MemoryReader,
                              module_ranges: Sequence[tuple[int, int]]) -> int | None:
    """Return the address of ``modules`` in ``image`` (see the module doc), or None.

    :param module_ranges: where modules may be (a head's ``next``/``prev`` and every node must be in one)
    """
    module = btf.find_type_or_none("module", TypeKind.STRUCT)
    if module is None:
        return None
    list_off, state_off, name_off = _offset(module, "list"), _offset(module, "state"), _offset(module, "name")
    usable = len(image.data) // 16 * 16
    words = np.frombuffer(image.data[:usable], dtype="<u8")
    inside = np.zeros(len(words), dtype=bool)
    for lo, hi in module_ranges:
        inside |= (words >= lo) & (words < hi)

    def in_area(address: int) -> bool:
        return any(lo <= address < hi for lo, hi in module_ranges)
    # a head with modules on it: next and prev both in the module area
    candidates = np.flatnonzero(inside[0::2] & inside[1::2]) * 2

    def read_u64(address: int) -> int:
        return int.from_bytes(memory.read(address, 8), "little")

    for index in candidates.tolist():
        head = image.base + index * 8
        nodes = _ring_or_none(head, read_u64)
        if not nodes:
            continue
        if all(in_area(n) and _module_ok(memory.read, n - list_off, state_off, name_off) for n in nodes):
            return head
    return None


def _aarch64_module_window(init_begin: int) -> tuple[int, int]:
    # arm64 with KASLR (before v6.5) allocates modules within 2 GiB below the kernel's text
    # (module_alloc_base, arch/arm64/kernel/kaslr.c), outside MODULES_VADDR..MODULES_END
    return max(init_begin - _MODULE_WINDOW, 0), init_begin


def recover_symbols(memory: MemoryReader, address_of: Callable[[str], int],
                    module_range: tuple[int, int]) -> Sequence[RecoveredSymbol]:
    """Recover ``__start_BTF``/``__stop_BTF``, ``init_task`` and ``modules`` (see the module doc).

    :param memory: the kernel address space
    :param address_of: kallsyms lookups (``_etext``, ``__init_begin`` are text-section symbols)
    :param module_range: the module area
    :return: what was found, each validated; empty when the BTF is not found
    """
    etext, init_begin = address_of("_etext"), address_of("__init_begin")
    if not 0 < init_begin - etext <= 4 * _MAX_BTF:
        return []
    try:
        rodata = memory.read(etext, init_begin - etext)
    except FaultError:
        rodata = read_image_data(memory, etext, init_begin - etext).data
    found = find_btf_or_none(rodata, etext)
    if found is None:
        return []
    start, stop, btf = found
    rule = "a BTF header in .rodata (_etext.._init_begin) whose types parse and hold struct task_struct"
    out = [RecoveredSymbol("__start_BTF", start, rule), RecoveredSymbol("__stop_BTF", stop, rule)]
    image = read_image_data(memory, init_begin)

    def read_u64(address: int) -> int:
        return int.from_bytes(memory.read(address, 8), "little")

    init_task = find_init_task_or_none(image, btf, read_u64)
    if init_task is not None:
        out.append(RecoveredSymbol("init_task", init_task,
                                   "the task_struct in .data with comm swapper/0, pid 0 and a consistent tasks ring"))
    head = find_modules_head_or_none(image, btf, memory, [module_range, _aarch64_module_window(init_begin)])
    if head is not None:
        out.append(RecoveredSymbol("modules", head, "the list_head in .data whose ring holds only struct "
                                   "modules (valid state, printable name) in the module area"))
    return out


def recover_missing_symbols(memory: MemoryReader, symbols: object) -> Sequence[RecoveredSymbol]:
    """Add :func:`recover_symbols`' finds to a kallsyms table that lacks ``__start_BTF`` and ``init_task``
    (text symbols only), with a warning naming them; any other symbol source is left as it is.

    :param memory: the kernel address space (a :class:`~kcrash.memory.kernel.KernelMemory`)
    :param symbols: the program's symbol source
    :return: what was added (empty when nothing was missing or nothing was found)
    """
    if not isinstance(symbols, SymbolTable) or not isinstance(memory, KernelMemory) \
            or symbols.has_symbol("__start_BTF") or symbols.has_symbol("init_task") \
            or not symbols.has_symbol("_etext") or not symbols.has_symbol("__init_begin"):
        return []
    found = recover_symbols(memory, symbols.address_of, memory.module_range())
    if found:
        symbols.add_recovered((s.name, s.address, "D") for s in found)
        hows: dict[str, list[str]] = {}
        for s in found:
            hows.setdefault(s.how, []).append(f"{s.name} at {s.address:#x}")
        named = "; ".join(f"{', '.join(names)}: {how}" for how, names in hows.items())
        warnings.warn(f"kallsyms holds text symbols only; recovered from the dump by structure: {named}",
                      DumpWarning, stacklevel=3)
    return found
