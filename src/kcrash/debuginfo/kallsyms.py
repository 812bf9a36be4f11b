"""
kcrash.debuginfo.kallsyms
=========================

The kernel's in-memory symbol table (``kernel/kallsyms.c``, written by ``scripts/kallsyms``), found
through the ``SYMBOL(kallsyms_*)`` lines of VMCOREINFO (Linux ≥ 6.0, commit 5fd8fea935a1), so a
dump with no vmlinux still has symbols. Nothing in memory says which encoding the tables use, so
every known one is tried and the decode is **validated**, never guessed from the release:

* name lengths: one byte, or since commit 73bbb94466fd (v6.1, "big symbols") one or two bytes
  (``(b0 & 0x7f) | b1 << 7`` when bit 7 of ``b0`` is set); a candidate is kept when every name
  decodes to printable ASCII behind a type letter;
* addresses: absolute ``kallsyms_addresses[]`` (dropped in v6.11), or ``kallsyms_offsets[]`` read
  base-relative (``relative_base + (u32)off``), absolute-percpu (``off >= 0 ? off :
  relative_base - 1 - off``, ``CONFIG_KALLSYMS_ABSOLUTE_PERCPU``) or place-relative
  (``&kallsyms_offsets[i] + off``, v7.0); a candidate is kept when ``_stext`` decodes to
  VMCOREINFO's ``SYMBOL(_stext)`` and the addresses are sorted, as the kernel's binary search needs.

Each table is read with one memory read; names stay compressed and are expanded on access, found
by name through hashes (:mod:`kcrash.debuginfo.kallsyms_names`). The validated reading (prefix
positions, name hashes, encodings) is cached by build-id (:mod:`kcrash.debuginfo.cache`) and trusted
only for the very same table bytes, so a second open skips the walk. Module symbols are
:mod:`kcrash.debuginfo.modules`. :func:`encode_kallsyms` writes the tables (for tests).
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kcrash.debuginfo.cache import cache_path_or_none, read_cache_or_none, write_cache
from kcrash.debuginfo.kallsyms_names import (
    KallsymsNames,
    NameLayout,
    check_names,
    kind_letters,
    layout_from_heads,
    name_hashes,
    walk_names,
    walk_names_by_markers,
)
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import CorruptDumpError, FaultError, MissingDebugInfoError

if TYPE_CHECKING:
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory.reader import MemoryReader

__all__ = ["ADDRESS_ENCODINGS", "KallsymsImage", "KallsymsTables", "decode_kallsyms", "encode_kallsyms",
           "load_kallsyms"]

#: address encodings, in the order they are tried
ADDRESS_ENCODINGS = ("absolute", "base-relative", "absolute-percpu", "place-relative")
_CACHE_KIND = "kallsyms"
_CACHE_VERSION = 3
_MAX_SYMS = 1 << 24
#: budget of one read of kallsyms_names (a real table is a few MiB)
_NAMES_CAP = 64 << 20
_GIVE = "give --system-map or --vmlinux"
_MAX_PLACEMENTS = 64
_PLACEMENT_KIND = "kallsyms-placement"  # candidate table placements tried (a real image has one or two)
_U64 = np.uint64


@dataclass(frozen=True, slots=True)
class KallsymsTables:
    """A decoded kallsyms: names and ``nm`` letters (``kinds``, one character per symbol) in table
    order, runtime addresses, the encodings that validated, and whether the names came from the
    cache. ``length_encoding`` is ``"2-byte"`` only when some length needed the second byte; when
    every length fits in one byte both readings agree and it is ``"1-byte"``. ``address_encoding``
    is one of :data:`ADDRESS_ENCODINGS`."""

    names: Sequence[str]
    kinds: str
    addresses: npt.NDArray[np.uint64]
    length_encoding: str
    address_encoding: str
    stext: int
    from_cache: bool = False


def load_kallsyms(mem: MemoryReader, vmcoreinfo: VmcoreInfo | None, cache_dir: Path | None = None) -> SymbolTable:
    """Return the kernel's symbols decoded from its in-memory kallsyms (see the module doc).

    :param mem: the kernel address space
    :param vmcoreinfo: the dump's VMCOREINFO (None raises MissingDebugInfoError)
    :param cache_dir: the kcrash cache directory; names are cached under ``cache_dir/kallsyms/``
    """
    if vmcoreinfo is not None and vmcoreinfo.get_symbol_or_none("kallsyms_names") is None:
        tables, names = _decode_found(mem, vmcoreinfo, cache_dir)
        source = f"kallsyms, recognised in the kernel image (kallsyms_names at {names:#x})"
    else:
        tables, source = decode_kallsyms(mem, vmcoreinfo, cache_dir), "kallsyms, located by VMCOREINFO"
    return SymbolTable(tables.names, tables.addresses, tables.kinds, kernel_ranges=_kernel_ranges(tables),
                       source=f"{source}; {tables.address_encoding} addresses, {tables.length_encoding} lengths")


def _kept_placement(path: Path | None, stext: int) -> list[dict[str, int]]:
    kept = read_cache_or_none(path, _PLACEMENT_KIND, 1)
    if kept is None or kept[0].get("stext") != stext:
        return []
    symbols = kept[0].get("symbols")
    if not isinstance(symbols, dict) or not all(isinstance(v, int) for v in symbols.values()):
        return []
    return [{str(k): int(v) for k, v in symbols.items()}]


def _decode_found(mem: MemoryReader, vmcoreinfo: VmcoreInfo, cache_dir: Path | None) -> tuple[KallsymsTables, int]:
    # VMCOREINFO without the kallsyms lines (before v6.0): the tables recognised in the image by
    # their structure (kcrash.debuginfo.kallsyms_finder), each placement validated by the decoder.
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    from kcrash.debuginfo.kallsyms_finder import find_kallsyms_candidates

    # lazy: +86 ms CPU to import it after this module (measured, loaded host)
    from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo

    stext = vmcoreinfo.get_symbol_or_none("_stext")
    if stext is None:
        raise MissingDebugInfoError(f"VMCOREINFO has neither the kallsyms lines nor SYMBOL(_stext); {_GIVE}")
    # The placement that validated is kept by build-id (and _stext: KASLR moves it), so the image is
    # scanned once; a kept placement is still decoded and validated like any other candidate.
    path = cache_path_or_none(cache_dir, _PLACEMENT_KIND, vmcoreinfo.build_id)
    known = _kept_placement(path, stext)
    for tried, symbols in enumerate(itertools.chain(known, find_kallsyms_candidates(mem, stext))):
        if tried >= _MAX_PLACEMENTS:
            break
        lines = "".join(f"SYMBOL({name})={address:x}\n" for name, address in symbols.items())
        try:
            found = decode_kallsyms(mem, parse_vmcoreinfo(vmcoreinfo.text.rstrip("\n") + "\n" + lines), cache_dir)
        except (CorruptDumpError, MissingDebugInfoError):
            continue
        if not (known and tried == 0):
            write_cache(path, _PLACEMENT_KIND, 1, {"stext": stext, "symbols": symbols}, b"")
        return found, symbols["kallsyms_names"]
    raise MissingDebugInfoError("VMCOREINFO has no SYMBOL(kallsyms_*) lines (kernel older than 6.0?) and no "
                                f"kallsyms tables were recognised in the kernel image; {_GIVE}")


def decode_kallsyms(mem: MemoryReader, vmcoreinfo: VmcoreInfo | None, cache_dir: Path | None = None) -> KallsymsTables:
    """Decode and validate the kallsyms tables; raise MissingDebugInfoError when VMCOREINFO or the
    tables are missing, CorruptDumpError when no encoding validates."""
    where = _Where.from_vmcoreinfo(vmcoreinfo)
    reader = _Reader(mem)
    num = reader.u32(where.num_syms, "kallsyms_num_syms")
    if not 0 < num <= _MAX_SYMS:
        raise CorruptDumpError(f"kallsyms_num_syms at {where.num_syms:#x} is {num}")
    tokens_raw, tokens = _read_tokens(reader, where)
    data = reader.names(where, num)
    path = cache_path_or_none(cache_dir, _CACHE_KIND, vmcoreinfo.build_id if vmcoreinfo else None)
    facts = {"num_syms": num, "tokens_crc32": zlib.crc32(tokens_raw), "names": where.names - where.stext}
    cached = _from_cache(reader, where, data, tokens, read_cache_or_none(path, _CACHE_KIND, _CACHE_VERSION), facts)
    if cached is not None:
        return cached
    tables, found = _choose(reader, where, num, _name_candidates(data, where, num, tokens))
    write_cache(path, _CACHE_KIND, _CACHE_VERSION, {**facts, **_cache_facts(tables, found, data)},
                _cache_payload(found))
    return tables


@dataclass(frozen=True, slots=True)
class _Where:
    # Addresses of the tables (runtime, KASLR applied) as VMCOREINFO gives them.
    stext: int
    num_syms: int
    names: int
    token_table: int
    token_index: int
    offsets: int | None
    relative_base: int | None
    addresses: int | None
    known: tuple[int, ...]

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo | None) -> _Where:
        if info is None:
            raise MissingDebugInfoError(f"the dump has no VMCOREINFO, so its kallsyms cannot be found; {_GIVE}")
        need = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index", "_stext")
        for name in need:
            if info.get_symbol_or_none(name) is None:
                raise MissingDebugInfoError(
                    f"VMCOREINFO has no SYMBOL({name}): the kernel is older than 6.0 (or lacks the backport of "
                    f"the kallsyms VMCOREINFO lines) or the dump lacks VMCOREINFO; {_GIVE}")
        offsets, addresses = info.get_symbol_or_none("kallsyms_offsets"), info.get_symbol_or_none("kallsyms_addresses")
        if offsets is None and addresses is None:
            raise MissingDebugInfoError(
                f"VMCOREINFO has neither SYMBOL(kallsyms_offsets) nor SYMBOL(kallsyms_addresses); {_GIVE}")
        known = tuple(v for k, v in info.symbols.items() if k.startswith("kallsyms_"))
        return cls(info.get_symbol("_stext"), info.get_symbol("kallsyms_num_syms"), info.get_symbol("kallsyms_names"),
                   info.get_symbol("kallsyms_token_table"), info.get_symbol("kallsyms_token_index"), offsets,
                   info.get_symbol_or_none("kallsyms_relative_base"), addresses, known)

    def names_bound(self, num: int) -> int:
        # The names table ends before the next kallsyms table above it (scripts/kallsyms emits
        # them together); without one, assume at most 128 bytes a name. Either way at most
        # _NAMES_CAP: the addresses come from VMCOREINFO, not from the table's own size.
        above = [a for a in self.known if a > self.names]
        return min(min(above) - self.names if above else num * 128, _NAMES_CAP)


class _Reader:
    # Bulk reads that turn a missing table into MissingDebugInfoError.

    def __init__(self, mem: MemoryReader) -> None:
        self.mem = mem

    def read(self, address: int, size: int, what: str) -> bytes:
        try:
            return self.mem.read(address, size)
        except FaultError as exc:
            raise MissingDebugInfoError(
                f"{what} at {address:#x} is not in the dump ({exc.reason}); {_GIVE}") from exc

    def read_prefix(self, address: int, size: int, what: str) -> bytes:
        # As much of [address, address + size) as is readable from the start (at least 1 byte).
        try:
            return self.mem.read(address, size)
        except FaultError as exc:
            if not address < exc.address < address + size:
                raise MissingDebugInfoError(
                    f"{what} at {address:#x} is not in the dump ({exc.reason}); {_GIVE}") from exc
            return self.read(address, exc.address - address, what)

    def u32(self, address: int, what: str) -> int:
        return int.from_bytes(self.read(address, 4, what), "little")

    def u64(self, address: int, what: str) -> int:
        return int.from_bytes(self.read(address, 8, what), "little")

    def names(self, where: _Where, num: int) -> bytes:
        return self.read_prefix(where.names, where.names_bound(num), "kallsyms_names")


def _read_tokens(reader: _Reader, where: _Where) -> tuple[bytes, list[bytes]]:
    # kallsyms_token_index: 256 u16 offsets into kallsyms_token_table (NUL-terminated strings).
    index = np.frombuffer(reader.read(where.token_index, 512, "kallsyms_token_index"), dtype="<u2").tolist()
    gap = where.token_index - where.token_table
    size = gap if 0 < gap <= 0x10000 else max(index) + 4096
    table = reader.read_prefix(where.token_table, size, "kallsyms_token_table")
    tokens = []
    for off in index:
        end = table.find(b"\0", off)
        if end < 0:
            raise CorruptDumpError(f"kallsyms_token_table at {where.token_table:#x}: token at +{off:#x} "
                                   "is not NUL-terminated")
        tokens.append(table[off:end])
    return table[:max(index) + 1], tokens


# -- names -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Names:
    # One reading of kallsyms_names that validated (see kallsyms_names.check_names).
    length_encoding: str
    big: bool
    layout: NameLayout
    names: KallsymsNames
    kinds: str


def _name_candidates(data: bytes, where: _Where, num: int, tokens: list[bytes]) -> list[_Names]:
    # Read the lengths both ways; identical walks are read once, the 2-byte reading goes first.
    out = []
    markers = _marker_tables(data, where, num)
    narrow = _walk(data, num, markers, big=False)
    if narrow is not None:
        found = _reading(data, narrow[0], narrow[1], tokens, big=False)
        out += [found] if found is not None else []
        if not narrow[2] and out:
            return out  # no length needed a second byte: the 2-byte reading is the same
    wide = _walk(data, num, markers, big=True)
    if wide is not None and (narrow is None or narrow[2]):
        found = _reading(data, wide[0], wide[1], tokens, big=True)
        out[:0] = [found] if found is not None else []
    return out


def _marker_tables(data: bytes, where: _Where, num: int) -> list[tuple[npt.NDArray[np.int64], int]]:
    # Where kallsyms_markers (u32; unsigned long in older kernels) may lie, with its offset: between
    # the names and the next table, right before it or before kallsyms_seqs_of_names (3 bytes a
    # symbol, when the kernel has it); scripts/kallsyms aligns each label to 8 bytes.
    if not any(a > where.names for a in where.known):
        return []
    top, chunks, out = where.names + len(data), (num + 255) // 256, []
    for seqs in (0, 3 * num):
        for width in (4, 8):
            start = ((top - seqs) // 8 * 8 - width * chunks) // 8 * 8 - where.names
            if start > 0:
                table = np.frombuffer(data, dtype=f"<u{width}", count=chunks, offset=start)
                out.append((table.astype(np.int64), start))
    return out


def _walk(data: bytes, num: int, markers: list[tuple[npt.NDArray[np.int64], int]], *,
          big: bool) -> tuple[Sequence[int] | npt.NDArray[np.int64], int, bool] | None:
    # The length prefixes, from the markers that fit, else by walking every name.
    for table, start in markers:
        found = walk_names_by_markers(data, table, num, big=big, limit=start)
        if found is not None:
            return found
    return walk_names(data, num, big=big)


def _reading(data: bytes, heads: Sequence[int] | npt.NDArray[np.int64], end: int, tokens: list[bytes], *, big: bool,
             hashes: npt.NDArray[np.uint32] | None = None) -> _Names | None:
    # The names of one length reading when its prefixes chain and every name decodes, else None.
    # A cached reading (hashes given) was checked when written, for these very table bytes.
    layout = layout_from_heads(data, np.asarray(heads, dtype=np.int64), end, big=big)
    if layout is None or (hashes is None and not check_names(data, layout, tokens)):
        return None
    if hashes is None:
        hashes = name_hashes(data, layout, tokens)
    names = KallsymsNames(data, layout, tokens, hashes)
    wide = big and bool(np.any(layout.bodies - layout.heads == 2))
    return _Names("2-byte" if wide else "1-byte", big, layout, names, kind_letters(data, layout, tokens))


# -- cache: the name layout and hashes by build-id; names and addresses are always read from memory -

def _cache_facts(tables: KallsymsTables, found: _Names, data: bytes) -> dict[str, object]:
    end = found.layout.end
    return {"length_encoding": tables.length_encoding, "big": found.big,
            "address_encoding": tables.address_encoding, "names_end": end, "names_crc32": zlib.crc32(data[:end])}


def _cache_payload(found: _Names) -> bytes:
    # the prefix positions (u32), then the name hashes (u32), little-endian
    return found.layout.heads.astype("<u4").tobytes() + found.names.hashes.astype("<u4").tobytes()


def _from_cache(reader: _Reader, where: _Where, data: bytes, tokens: list[bytes],
                found: tuple[dict[str, object], bytes] | None, facts: dict[str, int]) -> KallsymsTables | None:
    # The cached reading when it belongs to these very names (same table bytes), its prefixes chain
    # and it validates against memory (_stext at VMCOREINFO's address, sorted addresses); else None.
    if found is None:
        return None
    cached, payload = found
    num, end, big = facts["num_syms"], cached.get("names_end"), cached.get("big")
    address_encoding = cached.get("address_encoding")
    if any(cached.get(k) != v for k, v in facts.items()) or not isinstance(end, int) or not isinstance(big, bool) \
            or address_encoding not in ADDRESS_ENCODINGS or len(payload) != num * 8 or not 0 < end <= len(data) \
            or cached.get("names_crc32") != zlib.crc32(data[:end]):
        return None
    words = np.frombuffer(payload, dtype="<u4")
    names = _reading(data, words[:num].astype(np.int64), end, tokens, big=big, hashes=words[num:].astype(np.uint32))
    if names is None or names.length_encoding != cached.get("length_encoding"):
        return None
    stext = names.names.positions_of("_stext")
    for encoding, addrs in _address_candidates(reader, where, num, only=str(address_encoding)):
        if _validates(stext, addrs, where):
            return KallsymsTables(names.names, names.kinds, addrs, names.length_encoding, encoding, where.stext, True)
    return None


def _validates(stext: list[int], addrs: npt.NDArray[np.uint64], where: _Where) -> bool:
    # _stext (its positions in the names) at VMCOREINFO's address, and the addresses sorted as the
    # kernel's binary search needs
    return bool(stext) and int(addrs[stext[0]]) == where.stext and bool(np.all(addrs[1:] >= addrs[:-1]))


# -- addresses ---------------------------------------------------------------------------------

def _choose(reader: _Reader, where: _Where, num: int, candidates: list[_Names]) -> tuple[KallsymsTables, _Names]:
    if not candidates:
        raise CorruptDumpError(f"kallsyms_names at {where.names:#x} does not decode with 1- or 2-byte name "
                               f"lengths ({num} symbols)")
    address_sets = _address_candidates(reader, where, num)
    for found in candidates:
        stext = found.names.positions_of("_stext")
        for address_encoding, addrs in address_sets:
            if _validates(stext, addrs, where):
                return KallsymsTables(found.names, found.kinds, addrs, found.length_encoding, address_encoding,
                                      where.stext), found
    raise CorruptDumpError(f"kallsyms tables at {where.names:#x} do not validate: no encoding puts _stext at "
                           f"{where.stext:#x} with sorted addresses")


def _address_candidates(reader: _Reader, where: _Where, num: int, *,
                        only: str | None = None) -> list[tuple[str, npt.NDArray[np.uint64]]]:
    # Each address encoding the tables allow (``only``: just that one, when it applies).
    out = _decoded_addresses(reader, where, num, only)
    return [(enc, addrs) for enc, addrs in out if only is None or enc == only]


def _decoded_addresses(reader: _Reader, where: _Where, num: int,
                       only: str | None) -> list[tuple[str, npt.NDArray[np.uint64]]]:
    out: list[tuple[str, npt.NDArray[np.uint64]]] = []
    if where.addresses is not None and only in (None, "absolute"):
        raw = reader.read(where.addresses, num * 8, "kallsyms_addresses")
        out.append(("absolute", np.frombuffer(raw, dtype="<u8").astype(_U64)))
    if where.offsets is None or only == "absolute":
        return out
    offs = np.frombuffer(reader.read(where.offsets, num * 4, "kallsyms_offsets"), dtype="<i4")
    if where.relative_base is not None:
        base = _U64(reader.u64(where.relative_base, "kallsyms_relative_base"))
        out.append(("base-relative", base + offs.view("<u4").astype(_U64)))
        # negative offsets count down from relative_base - 1: base - 1 - off == base + ~off
        out.append(("absolute-percpu", np.where(offs >= 0, offs.astype(_U64), base + (~offs).astype(_U64))))
    places = _U64(where.offsets) + np.arange(num, dtype=_U64) * _U64(4)
    with np.errstate(over="ignore"):
        out.append(("place-relative", places + offs.astype(np.int64).astype(_U64)))
    return out


def _kernel_ranges(tables: KallsymsTables) -> list[tuple[int, int]]:
    # is_ksym_addr(): [_stext, _end) with KALLSYMS_ALL, else the text ranges; _stext is VMCOREINFO's.
    ranges = SymbolTable.kernel_ranges_for(tables.names, tables.addresses, tables.kinds)
    return [(tables.stext, end) if i == 0 else (start, end) for i, (start, end) in enumerate(ranges)]


# -- writer (tests, fixtures) ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KallsymsImage:
    """kallsyms tables laid out at ``base``: the bytes to place there and the VMCOREINFO lines
    (``SYMBOL(kallsyms_*)=…``) that describe them."""

    base: int
    data: bytes
    symbols: dict[str, int]

    def vmcoreinfo_lines(self) -> list[str]:
        """Return ``SYMBOL(name)=hex`` lines for the tables."""
        return [f"SYMBOL({k})={v:x}" for k, v in self.symbols.items()]


def encode_kallsyms(symbols: Sequence[tuple[str, str, int]], *, base: int, address_encoding: str = "absolute-percpu",
                    big_lengths: bool = True, percpu: frozenset[str] = frozenset(), markers: bool = True,
                    seqs_of_names: bool = False) -> KallsymsImage:
    """Write kallsyms tables for ``(kind, name, address)`` rows (sorted by address) at ``base``, in
    the order 6.1's ``scripts/kallsyms`` emits them (addresses or offsets first). ``percpu`` names
    are stored as absolute values under ``absolute-percpu``. ``big_lengths=False`` writes one length
    byte (up to 255 tokens) as kernels before 6.1 did; else lengths over 127 take two bytes.
    ``markers`` writes ``kallsyms_markers`` (u32) after the names and ``seqs_of_names`` then
    ``kallsyms_seqs_of_names`` (6.2+); like the kernel's VMCOREINFO, the image does not name them."""
    texts = [k + n for k, n, _ in symbols]
    tokens = _make_tokens(texts)
    lookup = {t.decode(): i for i, t in enumerate(tokens) if t}
    relative = min((a for (_, n, a) in symbols if n not in percpu), default=0)
    names = [_encode_name(t, lookup, big_lengths) for t in texts]
    tables: list[tuple[str, bytes]] = [
        _address_table(symbols, address_encoding, base, relative, percpu),
        ("kallsyms_relative_base", relative.to_bytes(8, "little")),
        ("kallsyms_num_syms", len(symbols).to_bytes(4, "little")),
        ("kallsyms_names", b"".join(names)),
        ("kallsyms_markers", _markers(names) if markers else b""),
        ("kallsyms_seqs_of_names", _seqs_of_names(symbols) if seqs_of_names else b""),
        ("kallsyms_token_table", b"".join(t + b"\0" for t in tokens)),
        ("kallsyms_token_index", b"".join(_token_offsets(tokens))),
    ]
    if address_encoding not in ("base-relative", "absolute-percpu"):
        del tables[1]
    data, where = bytearray(), {}
    for name, blob in tables:
        data += bytes(-len(data) % 8)
        if name not in ("kallsyms_markers", "kallsyms_seqs_of_names"):
            where[name] = base + len(data)
        data += blob
    return KallsymsImage(base, bytes(data), where)


def _markers(names: list[bytes]) -> bytes:
    offsets, pos = [], 0
    for i, name in enumerate(names):
        if i % 256 == 0:
            offsets.append(pos)
        pos += len(name)
    return b"".join(o.to_bytes(4, "little") for o in offsets)


def _seqs_of_names(symbols: Sequence[tuple[str, str, int]]) -> bytes:
    # positions sorted by name (ties by address, then position), 3 bytes each, big-endian
    order = sorted(range(len(symbols)), key=lambda i: (symbols[i][1], symbols[i][2], i))
    return b"".join(i.to_bytes(3, "big") for i in order)


def _address_table(symbols: Sequence[tuple[str, str, int]], encoding: str, at: int, relative: int,
                   percpu: frozenset[str]) -> tuple[str, bytes]:
    if encoding == "absolute":
        return "kallsyms_addresses", b"".join(a.to_bytes(8, "little") for _, _, a in symbols)
    values = []
    for i, (_, name, a) in enumerate(symbols):
        if encoding == "base-relative":
            values.append(a - relative)
        elif encoding == "absolute-percpu":
            values.append(a if name in percpu else relative - 1 - a)
        elif encoding == "place-relative":
            values.append(a - (at + 4 * i))
        else:
            raise ValueError(f"unknown address encoding {encoding!r}")
    return "kallsyms_offsets", b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in values)


def _token_offsets(tokens: list[bytes]) -> list[bytes]:
    out, pos = [], 0
    for t in tokens:
        out.append(pos.to_bytes(2, "little"))
        pos += len(t) + 1
    return out


def _make_tokens(texts: list[str]) -> list[bytes]:
    # 256 tokens: every character used, then the most frequent bigrams; unused slots stay empty.
    tokens = [c.encode() for c in sorted({c for t in texts for c in t})]
    counts: dict[str, int] = {}
    for t in texts:
        for i in range(len(t) - 1):
            counts[t[i:i + 2]] = counts.get(t[i:i + 2], 0) + 1
    for pair, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max(256 - len(tokens), 0)]:
        tokens.append(pair.encode())
    if len(tokens) > 256:
        raise ValueError("more than 256 distinct characters")
    return tokens + [b""] * (256 - len(tokens))


def _encode_name(text: str, lookup: dict[str, int], big: bool) -> bytes:
    out, i = bytearray(), 0
    while i < len(text):
        step = 2 if text[i:i + 2] in lookup else 1
        out.append(lookup[text[i:i + step]])
        i += step
    n = len(out)
    if n < (0x80 if big else 0x100):
        return bytes([n]) + out
    if not big or n >= 1 << 14:
        raise ValueError(f"name {text!r} needs {n} tokens")
    return bytes([0x80 | (n & 0x7F), n >> 7]) + out
