"""
kcrash.dumps.kdump_header
=========================

The headers of the kdump-compressed ("diskdump") format: ``struct disk_dump_header`` (block 0)
and ``struct kdump_sub_header`` (block 1), with fields by ``header_version`` (1–6), 64- and 32-bit
layouts (i386 packs 8-byte members at 4; other 32-bit targets align them at 8) and either byte
order. The header has no byte-order marker: we use ``utsname.machine`` when it is known, else a
sane ``header_version`` and ``block_size``. Every size and offset we later trust is checked here
against the file size, so nothing downstream allocates from an unchecked header field.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcrash._binary import BinaryStructs, Record, binary_structs
from kcrash.dumps._io import FileView, read_exact
from kcrash.errors import CorruptDumpError, UnsupportedDumpFormat

__all__ = [
    "DUMP_DH_COMPRESSED_INCOMPLETE",
    "DUMP_DH_EXCLUDED_VMEMMAP",
    "KDUMP_SIGNATURES",
    "KdumpHeader",
    "read_kdump_header",
    "sniff_kdump",
    "status_flag_names",
]

KDUMP_SIGNATURES = (b"KDUMP   ", b"DISKDUMP")
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
_STATUS_NAMES = {0x1: "compressed_zlib", 0x2: "compressed_lzo", 0x4: "compressed_snappy",
                 0x8: "incomplete", 0x10: "excluded_vmemmap", 0x20: "compressed_zstd"}
_MAX_HEADER_VERSION = 64
_MAX_NOTE_BYTES = 64 << 20
# utsname.machine -> (word size, max alignment of 8-byte members, little endian)
_MACHINES = {
    "x86_64": (8, 8, True), "aarch64": (8, 8, True), "riscv64": (8, 8, True), "ppc64le": (8, 8, True),
    "ppc64": (8, 8, False), "s390x": (8, 8, False), "loongarch64": (8, 8, True), "mips64": (8, 8, False),
    "i386": (4, 4, True), "i486": (4, 4, True), "i586": (4, 4, True), "i686": (4, 4, True),
    "arm": (4, 8, True), "armv7l": (4, 8, True), "ppc": (4, 8, False), "mips": (4, 8, False),
    "s390": (4, 8, False),
}


def sniff_kdump(head: bytes) -> bool:
    """Return True if ``head`` starts with a kdump-compressed or diskdump signature."""
    return head[:8] in KDUMP_SIGNATURES


def status_flag_names(status: int) -> tuple[str, ...]:
    """Return the names of the set ``status`` bits (unknown bits as hex)."""
    names = [name for bit, name in _STATUS_NAMES.items() if status & bit]
    unknown = status & ~sum(_STATUS_NAMES)
    if unknown:
        names.append(f"{unknown:#x}")
    return tuple(names)


@dataclass(frozen=True, slots=True)
class KdumpHeader:
    """The validated header and sub-header facts of one kdump-compressed file."""

    signature: bytes
    header_version: int
    little_endian: bool
    word_size: int
    utsname: dict[str, str]
    timestamp: int
    status: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    nr_cpus: int
    phys_base: int
    dump_level: int
    split: int
    start_pfn: int
    end_pfn: int
    offset_vmcoreinfo: int
    size_vmcoreinfo: int
    offset_note: int
    size_note: int
    offset_eraseinfo: int
    size_eraseinfo: int

    @property
    def bitmap_offset(self) -> int:
        """Return the file offset of the 1st bitmap."""
        return (1 + self.sub_hdr_size) * self.block_size

    @property
    def bitmap_len(self) -> int:
        """Return the length of one bitmap in bytes."""
        return self.bitmap_blocks * self.block_size // 2

    @property
    def page_desc_offset(self) -> int:
        """Return the file offset of ``page_desc[0]``."""
        return (1 + self.sub_hdr_size + self.bitmap_blocks) * self.block_size


def _candidates(buf: bytes) -> list[BinaryStructs]:
    machine = buf[12 + 4 * 65:12 + 5 * 65].split(b"\0", 1)[0].decode("ascii", "replace")
    if machine in _MACHINES:
        word, align, little = _MACHINES[machine]
        return [binary_structs(little, word, align)]
    return [binary_structs(le, w, a) for le in (True, False) for w, a in ((8, 8), (4, 4), (4, 8))]


def _sane(rec: Record) -> bool:
    bs = rec["block_size"]
    return (0 < rec["header_version"] <= _MAX_HEADER_VERSION and 512 <= bs <= (1 << 20)
            and bs & (bs - 1) == 0 and rec["sub_hdr_size"] >= 0 and rec["bitmap_blocks"] > 0)


def _main_headers(view: FileView) -> list[tuple[BinaryStructs, Record]]:
    # Every plausible (layout, header) pair; an unknown machine can leave several.
    buf = view.pread(0, 512)
    if not sniff_kdump(buf):
        raise UnsupportedDumpFormat(f"{view.path}: not a kdump-compressed file")
    found = []
    for structs in _candidates(buf):
        rec = structs.disk_dump_header.unpack(buf, 0, file_offset=0)
        if _sane(rec):
            found.append((structs, rec))
    if found:
        return found
    rec = binary_structs().disk_dump_header.unpack(buf, 0, file_offset=0)
    raise CorruptDumpError(f"implausible disk_dump_header (header_version {rec['header_version']}, "
                           f"block_size {rec['block_size']}, bitmap_blocks {rec['bitmap_blocks']})",
                           8, str(view.path))


def _sub_header(view: FileView, structs: BinaryStructs, hdr: Record) -> dict[str, int]:
    layout = structs.kdump_sub_header
    fields = dict.fromkeys(layout.fields, 0)
    if hdr["sub_hdr_size"] == 0 or hdr["header_version"] < 1:
        return fields
    off = hdr["block_size"]
    rec = layout.unpack(read_exact(view, off, layout.size, "kdump_sub_header"), file_offset=off)
    version = hdr["header_version"]
    since = {"dump_level": 1, "split": 2, "start_pfn": 2, "end_pfn": 2, "offset_vmcoreinfo": 3,
             "size_vmcoreinfo": 3, "offset_note": 4, "size_note": 4, "offset_eraseinfo": 5,
             "size_eraseinfo": 5, "start_pfn_64": 6, "end_pfn_64": 6, "max_mapnr_64": 6}
    for name in layout.fields:
        if version >= since.get(name, 0):
            fields[name] = rec[name]
    return fields


def read_kdump_header(view: FileView) -> KdumpHeader:
    """Read and validate the headers of ``view``; raise CorruptDumpError with the offending offset.

    When the machine is unknown, the first layout whose sub-header validates wins (i386 packs
    8-byte members at 4, other 32-bit targets align them at 8; only the sub-header differs).
    """
    error: CorruptDumpError | None = None
    for structs, hdr in _main_headers(view):
        try:
            header = _header(view, structs, hdr)
            _validate(header, view)
            return header
        except CorruptDumpError as exc:
            error = error or exc
    assert error is not None
    raise error


def _header(view: FileView, structs: BinaryStructs, hdr: Record) -> KdumpHeader:
    sub = _sub_header(view, structs, hdr)
    version = hdr["header_version"]
    max_mapnr = sub["max_mapnr_64"] if version >= 6 else hdr["max_mapnr"]
    start_pfn = sub["start_pfn_64"] if version >= 6 else sub["start_pfn"]
    end_pfn = sub["end_pfn_64"] if version >= 6 else sub["end_pfn"]
    bits = 8 * structs.word_size
    phys_base = sub["phys_base"] - (1 << bits) if sub["phys_base"] >> (bits - 1) else sub["phys_base"]
    return KdumpHeader(
        signature=hdr.raw("signature"), header_version=version, little_endian=structs.little_endian,
        word_size=structs.word_size, utsname=_utsname(hdr), timestamp=hdr["tv_sec"], status=hdr["status"],
        block_size=hdr["block_size"], sub_hdr_size=hdr["sub_hdr_size"], bitmap_blocks=hdr["bitmap_blocks"],
        max_mapnr=max_mapnr, nr_cpus=hdr["nr_cpus"], phys_base=phys_base, dump_level=sub["dump_level"],
        split=sub["split"], start_pfn=start_pfn, end_pfn=end_pfn,
        offset_vmcoreinfo=sub["offset_vmcoreinfo"], size_vmcoreinfo=sub["size_vmcoreinfo"],
        offset_note=sub["offset_note"], size_note=sub["size_note"],
        offset_eraseinfo=sub["offset_eraseinfo"], size_eraseinfo=sub["size_eraseinfo"])


def _utsname(hdr: Record) -> dict[str, str]:
    names = ("sysname", "nodename", "release", "version", "machine", "domainname")
    return {n: hdr.text(n).decode("utf-8", "replace") for n in names}


def _validate(h: KdumpHeader, view: FileView) -> None:
    path = str(view.path)
    bs = h.block_size
    if h.page_desc_offset > view.size:
        raise CorruptDumpError(f"sub_hdr_size {h.sub_hdr_size} and bitmap_blocks {h.bitmap_blocks} "
                               f"point past the end of the file", 432, path)
    if h.bitmap_blocks % 2:
        raise CorruptDumpError(f"odd bitmap_blocks {h.bitmap_blocks}", 436, path)
    if h.max_mapnr <= 0 or (h.max_mapnr + 7) // 8 > h.bitmap_len:
        raise CorruptDumpError(f"max_mapnr {h.max_mapnr} does not fit the bitmaps "
                               f"({h.bitmap_len} bytes each)", 440 if h.header_version < 6 else bs + 96, path)
    if h.split and not (0 <= h.start_pfn <= h.end_pfn <= h.max_mapnr):
        raise CorruptDumpError(f"split pfn range [{h.start_pfn}, {h.end_pfn}) is outside max_mapnr",
                               bs + 80, path)
    _check_area(view, "VMCOREINFO", h.offset_vmcoreinfo, h.size_vmcoreinfo, bs + 32)
    _check_area(view, "ELF notes", h.offset_note, h.size_note, bs + 48)


def _check_area(view: FileView, what: str, offset: int, size: int, field_offset: int) -> None:
    if size == 0:
        return
    if offset <= 0 or size > _MAX_NOTE_BYTES or offset + size > view.size:
        raise CorruptDumpError(f"{what} area [{offset:#x}, +{size:#x}) lies outside the file",
                               field_offset, str(view.path))
