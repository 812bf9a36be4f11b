"""
kcrash.helpers.linux.printk
===========================

The kernel log from a dump or a live target, with no vmlinux: the lockless printk ring buffer
(``kernel/printk/printk_ringbuffer.h``, Linux ≥ 5.10) walked with the sizes and offsets the kernel
exports in VMCOREINFO (``SYMBOL(prb)``, ``OFFSET(printk_ringbuffer.*)``, ``OFFSET(prb_desc*.*)``,
``OFFSET(printk_info.*)``). :func:`get_printk_records` returns :class:`PrintkRecord`\\ s in sequence
order; :func:`format_dmesg` renders them as ``makedumpfile --dump-dmesg`` does. The older
variable-length ``log_buf`` format (3.5–5.9) is not read here. On a damaged dump (pages cut off or
filtered) the rings are read page by page: every record whose descriptor, info and text bytes are
present is returned, the others are counted in :attr:`PrintkLog.missing`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcrash.errors import FaultError, MissingDebugInfoError, ValidationError

if TYPE_CHECKING:
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory.reader import MemoryReader

__all__ = ["PrintkLog", "PrintkRecord", "format_dmesg", "format_record", "get_printk_log", "get_printk_records"]

_BITS_PER_LONG = 64
_STATE_SHIFT = _BITS_PER_LONG - 2
_ID_MASK = (1 << _STATE_SHIFT) - 1
_COMMITTED, _FINALIZED = 1, 2
# The largest rings a kernel can have: log_buf_len is at most 2 GiB (log_buf_len_update() caps it),
# and a descriptor ring has one descriptor per 32 bytes of text (PRB_AVGBITS 5).
_MAX_SIZE_BITS = 31
_MAX_COUNT_BITS = _MAX_SIZE_BITS - 5
_PAGE = 4096
_MAX_STRUCT = 4096  # no printk struct (or member offset in one) is this large
_WHOLE_READ = 16 << 20  # rings up to this size are read at once; larger ones page by page, on demand
#: ``enum printk_info_flags``
LOG_NEWLINE, LOG_CONT = 2, 8


@dataclass(frozen=True, slots=True)
class PrintkRecord:
    """One record of the printk ring buffer.

    A ``struct printk_info`` and its text (``kernel/printk/printk_ringbuffer.h``).

    :param seq: ``info->seq``, the record's sequence number
    :param ts_nsec: ``info->ts_nsec``, nanoseconds since boot
    :param text: the text as stored (no prefix, no trailing newline)
    :param caller_id: ``info->caller_id`` (``CONFIG_PRINTK_CALLER``), None if not recorded
    :param level: the log level (0-7), None if not recorded
    :param facility: the syslog facility, None if not recorded
    :param flags: ``info->flags`` (``LOG_NEWLINE``, ``LOG_CONT``), None if not recorded

    >>> record = get_printk_records(prog.memory, prog.vmcoreinfo)[0]
    >>> record.caller, record.is_continuation
    ('T0', False)
    """

    seq: int
    ts_nsec: int
    text: bytes
    caller_id: int | None
    level: int | None
    facility: int | None
    flags: int | None

    @property
    def caller(self) -> str | None:
        """Return the caller as printed with ``CONFIG_PRINTK_CALLER``.

        :return: ``T<pid>`` or ``C<cpu>``, or None when the record has no caller id
        """
        if self.caller_id is None:
            return None
        kind = "C" if self.caller_id & 0x80000000 else "T"
        return f"{kind}{self.caller_id & 0x7FFFFFFF}"

    @property
    def is_continuation(self) -> bool:
        """Whether the record continues the previous one (``LOG_CONT`` without ``LOG_NEWLINE``).

        :return: True for a continuation record
        """
        return bool(self.flags is not None and self.flags & LOG_CONT)


@dataclass(frozen=True, slots=True)
class _Layout:
    # The offsets we need, all from VMCOREINFO.
    desc_ring: int
    text_ring: int
    count_bits: int
    descs: int
    infos: int
    head_id: int
    tail_id: int
    counter: int
    size_bits: int
    data: int
    prb_desc: int
    state_var: int
    text_blk_lpos: int
    lpos_begin: int
    lpos_next: int
    printk_info: int
    seq: int
    ts_nsec: int
    text_len: int
    caller_id: int | None


def _layout(info: VmcoreInfo) -> _Layout:
    o = info.offsets
    try:
        return _Layout(
            o["printk_ringbuffer.desc_ring"], o["printk_ringbuffer.text_data_ring"], o["prb_desc_ring.count_bits"],
            o["prb_desc_ring.descs"], o["prb_desc_ring.infos"], o["prb_desc_ring.head_id"],
            o["prb_desc_ring.tail_id"], o.get("atomic_long_t.counter", 0), o["prb_data_ring.size_bits"],
            o["prb_data_ring.data"], info.sizes["prb_desc"], o["prb_desc.state_var"], o["prb_desc.text_blk_lpos"],
            o["prb_data_blk_lpos.begin"], o["prb_data_blk_lpos.next"], info.sizes["printk_info"],
            o["printk_info.seq"], o["printk_info.ts_nsec"], o["printk_info.text_len"], o.get("printk_info.caller_id"))
    except KeyError as exc:
        raise MissingDebugInfoError(f"VMCOREINFO lacks {exc.args[0]} (no lockless printk ring buffer)") from None


def _checked(lay: _Layout) -> _Layout:
    # Offsets and sizes come from VMCOREINFO (untrusted): each lies inside a small struct, so none
    # may make us read (or allocate) beyond one page per struct.
    for name in lay.__dataclass_fields__:
        value = getattr(lay, name)
        if value is not None and not 0 <= value < _MAX_STRUCT:
            raise ValidationError(f"VMCOREINFO printk offset or size {name}={value} is impossible")
    if lay.prb_desc == 0 or lay.printk_info == 0:
        raise ValidationError("VMCOREINFO gives a zero SIZE(prb_desc) or SIZE(printk_info)")
    return lay


def _u(buf: bytes, off: int, size: int) -> int:
    return int.from_bytes(buf[off:off + size], "little")


@dataclass(frozen=True, slots=True)
class PrintkLog:
    """What could be read of the printk ring buffer, as :func:`get_printk_log` finds it.

    :param records: the records that could be read, oldest first
    :param missing: how many committed records were lost to missing pages
    :param unreadable: why not even the ring could be read (its own pages are missing from a damaged
        dump), else None

    >>> log = get_printk_log(prog.memory, prog.vmcoreinfo)
    >>> log.missing
    0
    """

    records: list[PrintkRecord]
    missing: int
    #: why not even the ring could be read (its own pages are missing from a damaged dump), else None
    unreadable: str | None = None


def get_printk_records(mem: MemoryReader, info: VmcoreInfo) -> list[PrintkRecord]:
    """Return the committed and finalized records of the printk ring buffer (``prb``), oldest first.

    :param mem: a reader of the kernel's virtual address space
    :param info: VMCOREINFO of the same kernel (needs ``SYMBOL(prb)`` and the printk offsets)
    :return: the readable records (see :func:`get_printk_log` for what was lost)
    :raises MissingDebugInfoError: if VMCOREINFO has no ``SYMBOL(prb)`` (kernels before 5.10)
    :raises FaultError: if ``prb`` itself or the ring heads cannot be read

    >>> get_printk_records(prog.memory, prog.vmcoreinfo)[0].text[:32]
    b'Linux version 6.12.118+deb12-amd'
    """
    return get_printk_log(mem, info).records


def get_printk_log(mem: MemoryReader, info: VmcoreInfo) -> PrintkLog:
    """Return the readable records of the printk ring buffer and the count of records lost to missing pages.

    Walks ``prb``'s descriptor ring (``struct prb_desc``) and text ring by the VMCOREINFO offsets.

    :param mem: a reader of the kernel's virtual address space
    :param info: VMCOREINFO of the same kernel (needs ``SYMBOL(prb)`` and the printk offsets)
    :return: the records and what was lost
    :raises MissingDebugInfoError: if VMCOREINFO has no ``SYMBOL(prb)`` (kernels before 5.10)
    :raises ValidationError: if the ring's sizes are impossible
    :raises FaultError: only when ``prb`` itself or the ring heads cannot be read

    >>> len(get_printk_log(prog.memory, prog.vmcoreinfo).records)
    431
    """
    prb_ptr = info.get_symbol_or_none("prb")
    if prb_ptr is None:
        raise MissingDebugInfoError("VMCOREINFO has no SYMBOL(prb) (kernel older than 5.10?)")
    lay = _checked(_layout(info))
    rb = mem.read_u64(prb_ptr)
    head = mem.read(rb, max(lay.desc_ring, lay.text_ring) + 64)
    dr, tr = lay.desc_ring, lay.text_ring
    count_bits, size_bits = _u(head, dr + lay.count_bits, 4), _u(head, tr + lay.size_bits, 4)
    if count_bits > _MAX_COUNT_BITS or size_bits > _MAX_SIZE_BITS:
        raise ValidationError(f"printk ring sizes 2**{count_bits} descriptors, 2**{size_bits} bytes are impossible")
    count, size = 1 << count_bits, 1 << size_bits
    descs = _Sparse(mem, _u(head, dr + lay.descs, 8), count * lay.prb_desc)
    infos = _Sparse(mem, _u(head, dr + lay.infos, 8), count * lay.printk_info)
    data = _Sparse(mem, _u(head, tr + lay.data, 8), size)
    tail_id = _u(head, dr + lay.tail_id + lay.counter, 8)
    head_id = _u(head, dr + lay.head_id + lay.counter, 8)
    ring = _Ring(lay, count, size, descs, infos, data)
    records: list[PrintkRecord] = []
    missing = 0
    for ident in _ids(tail_id, head_id, count):
        try:
            record = ring.record(ident)
        except _Missing:
            missing += 1
            continue
        if record is not None:
            records.append(record)
    return PrintkLog(records, missing)


class _Missing(Exception):
    """A record touches bytes the dump does not have."""


class _Sparse:
    # A ring of ``size`` bytes at ``base``: read whole when it can be, else page by page on demand
    # (so a ring whose size the dump gives does not make us allocate that size); a record that
    # touches an unreadable page raises _Missing.
    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_mem", "_pages", "_whole", "base", "size")

    def __init__(self, mem: MemoryReader, address: int, size: int) -> None:
        self._mem, self.base, self.size = mem, address, size
        self._whole: bytes | None = None
        self._pages: dict[int, bytes | None] = {}
        if size <= _WHOLE_READ:
            with contextlib.suppress(FaultError):
                self._whole = mem.read(address, size)

    def get(self, offset: int, size: int) -> bytes:
        if self._whole is not None:
            return self._whole[offset:offset + size]
        start, end = self.base + offset, self.base + min(offset + size, self.size)
        parts: list[bytes] = []
        for page in range(start // _PAGE, (max(end, start + 1) - 1) // _PAGE + 1):
            data = self._page(page)
            if data is None:
                raise _Missing
            lo = max(page * _PAGE, self.base)
            parts.append(data[max(start - lo, 0):max(end - lo, 0)])
        return b"".join(parts)

    def _page(self, page: int) -> bytes | None:
        if page not in self._pages:
            lo, hi = max(page * _PAGE, self.base), min((page + 1) * _PAGE, self.base + self.size)
            try:
                self._pages[page] = self._mem.read(lo, hi - lo) if hi > lo else b""
            except FaultError:
                self._pages[page] = None
        return self._pages[page]


def _ids(tail_id: int, head_id: int, count: int) -> Iterator[int]:
    # tail..head inclusive; a corrupt pair cannot make us loop more than the ring holds.
    ident = tail_id
    for _ in range(count):
        yield ident
        if ident == head_id:
            return
        ident = (ident + 1) & _ID_MASK


@dataclass(frozen=True, slots=True)
class _Ring:
    lay: _Layout
    count: int
    size: int
    descs: _Sparse
    infos: _Sparse
    data: _Sparse

    def record(self, ident: int) -> PrintkRecord | None:
        lay = self.lay
        index = ident % self.count
        desc = self.descs.get(index * lay.prb_desc, lay.prb_desc)
        state = _u(desc, lay.state_var, 8) >> _STATE_SHIFT
        if state not in (_COMMITTED, _FINALIZED):
            return None
        lpos = lay.text_blk_lpos
        begin = _u(desc, lpos + lay.lpos_begin, 8)
        nxt = _u(desc, lpos + lay.lpos_next, 8)
        if begin & 1:  # FAILED_LPOS / NO_LPOS: a record without text
            return None
        info = self.infos.get(index * lay.printk_info, lay.printk_info)
        return self._build(info, self._text(begin, nxt, _u(info, lay.text_len, 2)))

    def _text(self, begin: int, nxt: int, text_len: int) -> bytes:
        b, n = begin % self.size, nxt % self.size
        if b > n:  # the block wrapped: its data starts at the beginning of the ring
            b = 0
        b += 8  # the block starts with its descriptor id
        return self.data.get(b, max(0, min(text_len, n - b)))

    def _build(self, info: bytes, text: bytes) -> PrintkRecord:
        lay = self.lay
        caller = _u(info, lay.caller_id, 4) if lay.caller_id is not None else None
        # struct printk_info: u16 text_len; u8 facility; u8 flags:5, level:3 (stable since 5.10;
        # not in VMCOREINFO, so read relative to text_len).
        packed = _u(info, lay.text_len + 3, 1)
        return PrintkRecord(seq=_u(info, lay.seq, 8), ts_nsec=_u(info, lay.ts_nsec, 8),
                            text=text, caller_id=caller, level=packed >> 5,
                            facility=_u(info, lay.text_len + 2, 1), flags=packed & 0x1F)


def _escape(byte: int) -> str:
    # makedumpfile prints ``\x%02x`` of a (signed) char: bytes >= 0x80 come out sign-extended.
    return f"\\x{byte:02x}" if byte < 0x80 else f"\\x{byte | 0xFFFFFF00:08x}"


_SPACE = frozenset(b" \t\n\v\f\r")


def format_record(record: PrintkRecord) -> str:
    r"""Return one record as ``makedumpfile --dump-dmesg`` prints it, with the trailing newline.

    ``[%5lu.%06lu] `` then the text; newlines indent the next line under the text, bytes that are
    neither printable ASCII nor white space become ``\xNN``.

    :param record: the record
    :return: the formatted line(s)

    >>> format_record(PrintkRecord(1, 1_500_000, b"hello", None, 6, 0, None))
    '[    0.001500] hello\n'
    """
    prefix = f"[{record.ts_nsec // 1_000_000_000:5d}.{record.ts_nsec % 1_000_000_000 // 1000:06d}] "
    out = [prefix]
    indent = "\n" + " " * len(prefix)
    for byte in record.text:
        if byte == 0x0A:
            out.append(indent)
        elif 0x20 <= byte < 0x7F or byte in _SPACE:
            out.append(chr(byte))
        else:
            out.append(_escape(byte))
    out.append("\n")
    return "".join(out)


def format_dmesg(records: Iterable[PrintkRecord]) -> str:
    """Return the whole log as ``makedumpfile --dump-dmesg`` prints it, one :func:`format_record` per record.

    :param records: the records, oldest first
    :return: the log text

    >>> print(format_dmesg(get_printk_records(prog.memory, prog.vmcoreinfo)[-2:]), end="")
    [   33.760576]  ret_from_fork_asm+0x1a/0x30
    [   33.760710]  </TASK>
    """
    return "".join(format_record(r) for r in records)
