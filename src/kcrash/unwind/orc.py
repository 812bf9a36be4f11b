"""
kcrash.unwind.orc
=================

x86-64 ORC unwind tables as the kernel keeps them in memory (``arch/x86/include/asm/orc_types.h``,
``arch/x86/kernel/unwind_orc.c``): an ``int`` array of place-relative instruction addresses
(``__start_orc_unwind_ip`` … ``__stop_orc_unwind_ip`` for vmlinux, ``mod->arch.orc_unwind_ip`` for a
module) and a parallel array of 6-byte ``struct orc_entry`` (``__start_orc_unwind``,
``mod->arch.orc_unwind``). :class:`OrcTable` reads both in bulk and finds the entry of an address by
binary search; :class:`OrcTables` joins vmlinux and module tables.

The bitfield word of ``struct orc_entry`` changed twice and carries no version marker in memory, so
:func:`detect_orc_format` decodes the whole table with each known layout and keeps the one whose
entries are all plausible (valid register numbers, types, and the type/signal/end rules objtool
follows). Layouts, by the kernel commit that introduced them:

- ``"end"``: ``sp_reg:4 bp_reg:4 type:2 end:1``; types CALL, REGS, REGS_PARTIAL; ``sp_reg``
  UNDEFINED with ``end`` marks the end of the stack (up to v6.2).
- ``"signal-end"``: ``sp_reg:4 bp_reg:4 type:2 signal:1 end:1`` (commit ffb1b4a41016, v6.3).
- ``"type3"``: ``sp_reg:4 bp_reg:4 type:3 signal:1`` with UNDEFINED, END_OF_STACK, CALL, REGS,
  REGS_PARTIAL (commit fb799447ae29, v6.4).

The register numbering of Linux 7.1 (reordered) is not known here. Not covered: the kernel's
``orc_lookup`` block index (a plain binary search over the sorted ips gives the same answer).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kcrash.errors import CorruptDumpError

__all__ = [
    "IDENTITY_REGISTERS",
    "ORC_FORMATS",
    "ORC_REG_BP",
    "ORC_REG_BP_INDIRECT",
    "ORC_REG_DI",
    "ORC_REG_DX",
    "ORC_REG_PREV_SP",
    "ORC_REG_R10",
    "ORC_REG_R13",
    "ORC_REG_SP",
    "ORC_REG_SP_INDIRECT",
    "ORC_REG_UNDEFINED",
    "ORC_TYPES",
    "OrcEntry",
    "OrcReader",
    "OrcTable",
    "OrcTables",
    "count_orc_violations",
    "decode_orc_entry",
    "deduce_register_numbers",
    "detect_orc_format",
    "encode_orc_entry",
    "renumber_registers",
    "vmlinux_orc_table",
]

ORC_REG_UNDEFINED = 0
ORC_REG_PREV_SP = 1
ORC_REG_DX = 2
ORC_REG_DI = 3
ORC_REG_BP = 4
ORC_REG_SP = 5
ORC_REG_R10 = 6
ORC_REG_R13 = 7
ORC_REG_BP_INDIRECT = 8
ORC_REG_SP_INDIRECT = 9

#: Normalized entry types (the ``type3`` numbering: index = value in that layout)
ORC_TYPES = ("undefined", "end_of_stack", "call", "regs", "regs_partial")
#: Known layouts of the ``struct orc_entry`` bitfield word, oldest first
ORC_FORMATS = ("end", "signal-end", "type3")

_ENTRY_DTYPE = np.dtype([("sp_offset", "<i2"), ("bp_offset", "<i2"), ("word", "<u2")])
_SP_REGS = (ORC_REG_DX, ORC_REG_DI, ORC_REG_BP, ORC_REG_SP, ORC_REG_R10, ORC_REG_R13,
            ORC_REG_BP_INDIRECT, ORC_REG_SP_INDIRECT)
_BP_REGS = (ORC_REG_UNDEFINED, ORC_REG_PREV_SP, ORC_REG_BP)
_OLD_TYPES = ("call", "regs", "regs_partial")
_MAX_ENTRIES = 1 << 24
_U64 = np.uint64


class OrcReader(Protocol):
    """What reading a table needs: ``read(address, size) -> bytes`` raising FaultError."""

    def read(self, address: int, size: int) -> bytes:
        """Read ``size`` bytes of kernel virtual memory."""
        ...


@dataclass(frozen=True, slots=True)
class OrcEntry:
    """One decoded ``struct orc_entry``; ``type`` is one of :data:`ORC_TYPES`.

    ``signal`` says the frame was interrupted (its return address is not a call site); in the
    ``"end"`` layout it is derived as the kernel did then (``type != CALL``).
    """

    sp_offset: int
    bp_offset: int
    sp_reg: int
    bp_reg: int
    type: str
    signal: bool


def _decode_word(word: int, fmt: str) -> tuple[str, bool]:
    sp_reg = word & 0xF
    if fmt == "type3":
        kind = (word >> 8) & 7
        return (ORC_TYPES[kind] if kind < len(ORC_TYPES) else f"unknown-{kind}"), bool(word >> 11 & 1)
    kind = (word >> 8) & 3
    end = bool(word >> (10 if fmt == "end" else 11) & 1)
    if sp_reg == ORC_REG_UNDEFINED:
        return ("end_of_stack" if end else "undefined"), False
    name = _OLD_TYPES[kind] if kind < 3 else f"unknown-{kind}"
    signal = name != "call" if fmt == "end" else bool(word >> 10 & 1)
    return name, signal


def decode_orc_entry(sp_offset: int, bp_offset: int, word: int, fmt: str) -> OrcEntry:
    """Decode one entry whose bitfield word is ``word`` in layout ``fmt``."""
    kind, signal = _decode_word(word, fmt)
    return OrcEntry(sp_offset, bp_offset, word & 0xF, (word >> 4) & 0xF, kind, signal)


def encode_orc_entry(entry: OrcEntry, fmt: str) -> bytes:
    """Encode ``entry`` as the 6 bytes of layout ``fmt`` (the inverse of decoding; for tests and writers)."""
    word = entry.sp_reg | entry.bp_reg << 4
    if fmt == "type3":
        word |= ORC_TYPES.index(entry.type) << 8 | int(entry.signal) << 11
    elif entry.type in ("undefined", "end_of_stack"):
        word |= int(entry.type == "end_of_stack") << (10 if fmt == "end" else 11)
    else:
        word |= _OLD_TYPES.index(entry.type) << 8
        if fmt == "signal-end":
            word |= int(entry.signal) << 10
    return np.array([(entry.sp_offset, entry.bp_offset, word)], dtype=_ENTRY_DTYPE).tobytes()


def count_orc_violations(words: npt.NDArray[np.uint16], fmt: str) -> int:
    """Count entries of a table (bitfield words) that are implausible when decoded as ``fmt``."""
    return int(np.count_nonzero(_implausible(words, fmt)))


def _implausible(words: npt.NDArray[np.uint16], fmt: str) -> npt.NDArray[np.bool_]:
    # Per word: True where it is implausible decoded as ``fmt``.
    w = words.astype(np.int64)
    sp_reg, bp_reg = w & 0xF, (w >> 4) & 0xF
    sp_ok, bp_ok = np.isin(sp_reg, _SP_REGS), np.isin(bp_reg, _BP_REGS)
    undefined_sp = sp_reg == ORC_REG_UNDEFINED
    if fmt == "type3":
        kind, signal = (w >> 8) & 7, (w >> 11) & 1
        unwindable = (kind >= 2) & (kind <= 4)
        bad = ((w >> 12) != 0) | (kind > 4) | (unwindable & ~sp_ok) | (~unwindable & ~undefined_sp)
        bad |= (kind >= 3) & (kind <= 4) & (signal == 0)
    else:
        kind = (w >> 8) & 3
        end_bit, top = (10, 11) if fmt == "end" else (11, 12)
        end = (w >> end_bit) & 1
        bad = ((w >> top) != 0) | (~undefined_sp & ((kind == 3) | ~sp_ok)) | ((end == 1) & ~undefined_sp)
        if fmt == "signal-end":
            bad |= ~undefined_sp & (kind != 0) & (((w >> 10) & 1) == 0)
    bad |= ~bp_ok
    return np.asarray(bad, dtype=np.bool_)


def detect_orc_format(words: npt.NDArray[np.uint16], *, tolerance: float = 0.001) -> str:
    """Return the layout (one of :data:`ORC_FORMATS`) under which the table's entries are plausible.

    Exactly one layout must have at most ``tolerance`` of its entries implausible and strictly
    fewer than every other layout; otherwise the table is corrupt or of an unknown layout
    (CorruptDumpError naming the counts).
    """
    # Plausibility depends on the 16-bit word alone: judge each of the 65536 values once per layout
    # and weigh it by how often it occurs, instead of judging every entry three times.
    # (only the values that occur: a few thousand of the 65536)
    histogram = np.bincount(np.ascontiguousarray(words), minlength=1 << 16)
    values = np.flatnonzero(histogram)
    weights = histogram[values]
    counts = {fmt: int(weights[_implausible(values.astype(np.uint16), fmt)].sum()) for fmt in ORC_FORMATS}
    ranked = sorted(counts, key=lambda f: counts[f])
    best = ranked[0]
    limit = int(len(words) * tolerance)
    if counts[best] > limit or counts[best] == counts[ranked[1]]:
        detail = ", ".join(f"{f}: {n}" for f, n in counts.items())
        raise CorruptDumpError(f"ORC table of {len(words)} entries fits no known layout "
                               f"(implausible entries per layout: {detail})")
    return best


#: the ``ORC_REG_*`` numbering (Linux up to 7.1): each number means itself
IDENTITY_REGISTERS = tuple(range(16))
#: a table number whose meaning could not be deduced (the unwinder stops at it)
_UNKNOWN_REG = 15


def deduce_register_numbers(entries: npt.NDArray[np.void]) -> tuple[int, ...]:
    """Map each register number a table uses to the ``ORC_REG_*`` it means, judged by how the
    kernel's own code uses them rather than from a list of numberings (Linux 7.2 renumbered them):
    the CFA of almost every instruction is the stack pointer plus an offset (``SP``); the caller's
    frame pointer, when saved, is found relative to the CFA (``PREV_SP``, the common ``bp_reg``);
    frame-pointer functions take the CFA from the frame pointer at offset 16 (``BP``); a CFA read
    through a frame pointer at a negative offset is ``BP_INDIRECT``. Numbers not judged keep their
    ``ORC_REG_*`` meaning unless that meaning went to another number (then they are unknown).
    The layout check that follows (:func:`detect_orc_format`) validates the result.
    """
    word = entries["word"].astype(np.int64)
    sp_reg, bp_reg, offset = word & 0xF, (word >> 4) & 0xF, entries["sp_offset"].astype(np.int64)
    used = sp_reg != ORC_REG_UNDEFINED
    if not used.any():
        return IDENTITY_REGISTERS
    sp = _most_common(sp_reg[used], ORC_REG_SP)
    prev_sp = _most_common(bp_reg[bp_reg != ORC_REG_UNDEFINED], ORC_REG_PREV_SP)
    bp = _most_common(sp_reg[used & (sp_reg != sp) & (offset == 16)], ORC_REG_BP)
    bp_indirect = _most_common(sp_reg[used & (offset < 0) & (sp_reg != sp) & (sp_reg != bp)], ORC_REG_BP_INDIRECT)
    roles = {sp: ORC_REG_SP, prev_sp: ORC_REG_PREV_SP, bp: ORC_REG_BP, bp_indirect: ORC_REG_BP_INDIRECT}
    if len(roles) < 4:  # two roles on one number: not a numbering, leave it to the layout check
        return IDENTITY_REGISTERS
    taken = set(roles.values())
    return tuple(roles.get(n, n if n not in taken else _UNKNOWN_REG) for n in range(16))


def _most_common(values: npt.NDArray[np.int64], default: int) -> int:
    return int(np.bincount(values, minlength=16).argmax()) if len(values) else default


def renumber_registers(entries: npt.NDArray[np.void], registers: tuple[int, ...]) -> npt.NDArray[np.void]:
    """A copy of ``entries`` with ``sp_reg``/``bp_reg`` rewritten through ``registers``."""
    table = np.asarray(registers, dtype=np.uint16)
    out = entries.copy()
    word = out["word"]
    out["word"] = (word & np.uint16(0xFF00)) | table[word & 0xF] | (table[(word >> 4) & 0xF] << np.uint16(4))
    return out


class OrcTable:
    """One sorted ORC table (vmlinux or one module): instruction addresses and their entries."""

    def __init__(self, ips: npt.NDArray[np.uint64], entries: npt.NDArray[np.void], fmt: str,
                 name: str = "") -> None:
        if len(ips) != len(entries) or not len(ips):
            raise CorruptDumpError(f"ORC table {name!r}: {len(ips)} ips for {len(entries)} entries")
        if np.any(ips[1:] < ips[:-1]):
            order = np.argsort(ips, kind="stable")
            ips, entries = ips[order], entries[order]
        self.ips = ips
        self.entries = entries
        self.format = fmt
        self.name = name
        #: the table's register numbers, mapped to the ``ORC_REG_*`` they mean (index: number in the table)
        self.registers: tuple[int, ...] = IDENTITY_REGISTERS

    @classmethod
    def from_memory(cls, mem: OrcReader, ip_table: int, entries: int, num_orcs: int, *,
                    fmt: str | None = None, name: str = "", registers: tuple[int, ...] | None = None) -> OrcTable:
        """Read a table: ``num_orcs`` ``int`` ips at ``ip_table`` (place-relative) and as many
        ``struct orc_entry`` at ``entries``. ``fmt=None`` detects the layout (see
        :func:`detect_orc_format`) and ``registers=None`` the register numbering (see
        :func:`deduce_register_numbers`); module tables should pass the vmlinux table's ``format``
        and ``registers``. Entries are kept renumbered to the ``ORC_REG_*`` numbers.
        Raises FaultError when the arrays cannot be read, CorruptDumpError when they make no sense.
        """
        if not 0 < num_orcs <= _MAX_ENTRIES:
            raise CorruptDumpError(f"ORC table {name!r}: implausible entry count {num_orcs}")
        rel = np.frombuffer(mem.read(ip_table, 4 * num_orcs), dtype="<i4")
        raw = np.frombuffer(mem.read(entries, 6 * num_orcs), dtype=_ENTRY_DTYPE)
        # ips[i] = &ip_table[i] + rel[i], modulo 2**64 like the kernel's pointer math (in place: 10^5+ entries)
        ips = np.arange(num_orcs, dtype=np.uint64)
        ips *= _U64(4)
        ips += _U64(ip_table)
        signed = ips.view(np.int64)  # int64 + int32 stays integer (uint64 + int32 would go through float)
        signed += rel
        if registers is None:
            registers = deduce_register_numbers(raw)
        if registers != IDENTITY_REGISTERS:
            raw = renumber_registers(raw, registers)
        if fmt is None:
            fmt = detect_orc_format(raw["word"])
        table = cls(ips, raw, fmt, name)
        table.registers = registers
        return table

    def __len__(self) -> int:
        return len(self.ips)

    @property
    def start(self) -> int:
        """Return the lowest instruction address covered."""
        return int(self.ips[0])

    @property
    def end(self) -> int:
        """Return the highest instruction address with an entry (usually a section terminator)."""
        return int(self.ips[-1])

    def get_entry(self, index: int) -> OrcEntry:
        """Return entry number ``index`` (in sorted order), decoded."""
        rec = self.entries[index]
        return decode_orc_entry(int(rec["sp_offset"]), int(rec["bp_offset"]), int(rec["word"]), self.format)

    def lookup(self, ip: int) -> OrcEntry | None:
        """Return the entry of the last ip ≤ ``ip`` (``__orc_find``), or None outside the table."""
        if not self.start <= ip <= self.end:
            return None
        index = int(np.searchsorted(self.ips, _U64(ip), side="right")) - 1
        return self.get_entry(index)


class OrcTables:
    """The ORC tables of one kernel (vmlinux plus loaded modules), looked up by address."""

    def __init__(self, tables: Iterable[OrcTable] = ()) -> None:
        self._tables: list[OrcTable] = []
        self._starts: list[int] = []
        for table in tables:
            self.add(table)

    def add(self, table: OrcTable) -> None:
        """Add one table (tables must not overlap)."""
        index = bisect.bisect_right(self._starts, table.start)
        self._starts.insert(index, table.start)
        self._tables.insert(index, table)

    @property
    def tables(self) -> Sequence[OrcTable]:
        """Return the tables, by start address."""
        return tuple(self._tables)

    def find_table_or_none(self, ip: int) -> OrcTable | None:
        """Return a table whose range covers ``ip`` (the one with the highest start) or None."""
        for table in self._covering(ip):
            return table
        return None

    def _covering(self, ip: int) -> Iterator[OrcTable]:
        index = bisect.bisect_right(self._starts, ip) - 1
        while index >= 0:
            if ip <= self._tables[index].end:
                yield self._tables[index]
            index -= 1

    def lookup(self, ip: int) -> OrcEntry | None:
        """Return the entry for ``ip``, or None when no table covers it.

        A module table can span a gap (its init text, allocated apart and freed after init) that
        holds another module; a gap only has the terminator entry objtool puts at each section end,
        so an ``undefined`` answer gives way to a defined one from another covering table.
        """
        found: OrcEntry | None = None
        for table in self._covering(ip):
            found = table.lookup(ip)
            if found is not None and found.type != "undefined":
                return found
        return found


def vmlinux_orc_table(mem: OrcReader, start_orc_unwind_ip: int, stop_orc_unwind_ip: int,
                      start_orc_unwind: int, *, fmt: str | None = None) -> OrcTable:
    """Read the vmlinux table from the addresses of ``__start_orc_unwind_ip``,
    ``__stop_orc_unwind_ip`` and ``__start_orc_unwind`` (kallsyms or System.map)."""
    size = stop_orc_unwind_ip - start_orc_unwind_ip
    if size <= 0 or size % 4:
        raise CorruptDumpError(f"ORC ip table bounds {start_orc_unwind_ip:#x}..{stop_orc_unwind_ip:#x} are invalid")
    return OrcTable.from_memory(mem, start_orc_unwind_ip, start_orc_unwind, size // 4, fmt=fmt, name="vmlinux")
