"""kallsyms decoding on synthetic tables: every name-length and address encoding is found by validation
(VMCOREINFO's OSRELEASE deliberately says nothing useful), the build-id cache, and typed errors on
missing or corrupt tables."""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcrash.debuginfo import kallsyms
from kcrash.debuginfo.kallsyms import ADDRESS_ENCODINGS, KallsymsImage, decode_kallsyms, encode_kallsyms, load_kallsyms
from kcrash.debuginfo.kallsyms_names import KallsymsNames, name_hash, walk_names, walk_names_by_markers
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.errors import CorruptDumpError, KcrashError, MissingDebugInfoError
from kcrash.memory import MemoryReader, SegmentMap
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

STEXT = 0xFFFFFFFF81000000
TABLES = STEXT + 0x1200000
BUILD_ID = "0123456789abcdef0123456789abcdef01234567"
PERCPU = frozenset({"__per_cpu_start", "fixed_percpu_data", "runqueues", "__per_cpu_end"})

Row = tuple[str, str, int]


def make_rows(*, long_name: bool, percpu: bool, count: int = 300, shift: int = 0, seed: int = 7) -> list[Row]:
    """Symbols shaped like a kernel's: per-CPU values first, aliases at _stext, text, data, _end."""
    rng = random.Random(seed)
    rows: list[Row] = []
    if percpu:
        rows += [("A", "__per_cpu_start", 0), ("A", "fixed_percpu_data", 0), ("A", "runqueues", 0x31C40),
                 ("A", "__per_cpu_end", 0x35000)]
    addr = STEXT + shift
    rows += [("T", "startup_64", addr), ("T", "_stext", addr), ("T", "_text", addr)]
    addr += 0x70
    for i in range(count):
        kind = rng.choice("tTtTdDbr")
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randrange(3, 20)))
        rows.append((kind, f"{word}_{i}", addr))
        addr += rng.randrange(1, 0x400)
    if long_name:  # 128..255 tokens after bigram compression
        rows.append(("t", "long_" + "".join(rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(200)),
                     addr))
        addr += 0x40
    rows += [("T", "_etext", addr), ("B", "_end", addr + 0x1000), ("B", "__brk_limit", addr + 0x1000)]
    return rows


def memory_with(image: KallsymsImage) -> MemoryReader:
    data = image.data
    segments = SegmentMap()
    segments.add_segment(image.base, len(data), lambda a, n: data[a - image.base:a - image.base + n], physical=False)
    return MemoryReader(segments)


def vmcoreinfo_for(image: KallsymsImage, *, stext: int = STEXT, extra: tuple[str, ...] = ()) -> VmcoreInfo:
    # OSRELEASE is the same for every encoding: the decoder must not look at it.
    lines = ["OSRELEASE=6.12.0-test", f"BUILD-ID={BUILD_ID}", f"SYMBOL(_stext)={stext:x}",
             *image.vmcoreinfo_lines(), *extra]
    return parse_vmcoreinfo("\n".join(lines) + "\n")


def encode(rows: list[Row], encoding: str, *, big: bool = True, base: int = TABLES) -> KallsymsImage:
    return encode_kallsyms(rows, base=base, address_encoding=encoding, big_lengths=big, percpu=PERCPU)


@pytest.mark.parametrize("encoding", ADDRESS_ENCODINGS)
@pytest.mark.parametrize(("big", "long_name", "expected_lengths"), [
    (True, True, "2-byte"),    # 6.1+ with a name over 127 tokens
    (False, True, "1-byte"),   # before 6.1: a length byte >= 0x80 is one byte; the 2-byte reading must be refused
    (True, False, "1-byte"),   # no long name: both readings agree
])
@pytest.mark.parametrize(("markers", "seqs"), [(True, False), (True, True), (False, False)],
                         ids=["markers", "markers+seqs", "no-markers"])
def test_every_encoding_is_found_by_validation(encoding: str, big: bool, long_name: bool, expected_lengths: str,
                                               markers: bool, seqs: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(long_name=long_name, percpu=encoding in ("absolute", "absolute-percpu"), count=600)
    image = encode_kallsyms(rows, base=TABLES, address_encoding=encoding, big_lengths=big, percpu=PERCPU,
                            markers=markers, seqs_of_names=seqs)
    extra = ()
    if "kallsyms_relative_base" not in image.symbols:
        # a decoy relative_base, so the base-relative and absolute-percpu readings are tried and refused
        extra = (f"SYMBOL(kallsyms_relative_base)={image.symbols['kallsyms_token_table']:x}",)
    if markers:  # the right reading must come from the markers alone, without the byte walk
        monkeypatch.setattr(kallsyms, "walk_names", lambda *_, **__: None)
    tables = decode_kallsyms(memory_with(image), vmcoreinfo_for(image, extra=extra))
    assert tables.address_encoding == encoding
    assert tables.length_encoding == expected_lengths
    assert tables.names == [n for _, n, _ in rows]
    assert tables.kinds == "".join(k for k, _, _ in rows)
    assert [int(a) for a in tables.addresses] == [a for _, _, a in rows]
    assert not tables.from_cache


def test_symbol_table_from_kallsyms() -> None:
    rows = make_rows(long_name=False, percpu=True)
    image = encode(rows, "absolute-percpu")
    table = load_kallsyms(memory_with(image), vmcoreinfo_for(image))
    assert table.num_symbols() == len(rows)
    assert table.kernel_ranges == [(STEXT, rows[-1][2])]  # [_stext, _end)
    symbol, offset = table.symbolize(STEXT + 3)
    assert (symbol.name, offset, symbol.size) == ("startup_64", 3, 0x70)  # first alias, like %pS
    assert table.address_of("runqueues") == 0x31C40
    assert table.symbolize_or_none(0x31C40) is None  # per-CPU offsets are not kernel addresses


def test_cache_makes_the_second_open_fast_and_survives_kaslr(tmp_path: Path) -> None:
    rows = make_rows(long_name=True, percpu=True, count=3000)
    image = encode(rows, "absolute-percpu")
    cold_start = time.perf_counter()
    cold = decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    cold_time = time.perf_counter() - cold_start
    assert (tmp_path / "kallsyms" / f"{BUILD_ID}.bin").is_file()
    warm = decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    assert warm.from_cache and not cold.from_cache
    assert warm.names == cold.names and warm.kinds == cold.kinds and warm.length_encoding == "2-byte"
    # the same kernel booted with another KASLR offset: names from the cache, addresses from memory
    shift = 0x2E00000
    moved_rows = make_rows(long_name=True, percpu=True, count=3000, shift=shift)
    moved = encode(moved_rows, "absolute-percpu", base=TABLES + shift)
    again = decode_kallsyms(memory_with(moved), vmcoreinfo_for(moved, stext=STEXT + shift), tmp_path)
    assert again.from_cache
    assert [int(a) for a in again.addresses] == [a for _, _, a in moved_rows]
    assert cold_time < 5  # generous: the real 94k-symbol timings are in the oracle test


def test_cache_that_does_not_match_is_ignored(tmp_path: Path) -> None:
    rows = make_rows(long_name=False, percpu=True)
    image = encode(rows, "absolute-percpu")
    path = tmp_path / "kallsyms" / f"{BUILD_ID}.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"KCRASH kallsyms 1\n{not json\n\0junk")
    assert not decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path).from_cache
    assert decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path).from_cache  # rewritten
    # another kernel claiming the same build-id (different symbols): the cache must not be used
    other = encode(make_rows(long_name=False, percpu=True, count=200, seed=9), "absolute-percpu")
    tables = decode_kallsyms(memory_with(other), vmcoreinfo_for(other), tmp_path)
    assert not tables.from_cache and len(tables.names) != len(rows)


def test_unwritable_cache_does_not_fail(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    assert len(decode_kallsyms(memory_with(image), vmcoreinfo_for(image), blocker).names) > 0


def test_missing_vmcoreinfo_names_what_would_help() -> None:
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    with pytest.raises(MissingDebugInfoError, match=r"no VMCOREINFO.*--system-map or --vmlinux"):
        load_kallsyms(memory_with(image), None)
    info = parse_vmcoreinfo(f"OSRELEASE=5.15.0\nSYMBOL(_stext)={STEXT:x}\n")
    with pytest.raises(MissingDebugInfoError,
                       match=r"no SYMBOL\(kallsyms_\*\).*older than 6.0.*no kallsyms tables were recognised"):
        load_kallsyms(memory_with(image), info)
    without_offsets = [x for x in image.vmcoreinfo_lines() if "kallsyms_offsets" not in x]
    info = parse_vmcoreinfo("\n".join([f"SYMBOL(_stext)={STEXT:x}", *without_offsets]))
    with pytest.raises(MissingDebugInfoError, match="kallsyms_offsets"):
        load_kallsyms(memory_with(image), info)


def test_tables_not_in_the_dump() -> None:
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    empty = MemoryReader(SegmentMap())
    with pytest.raises(MissingDebugInfoError, match=r"kallsyms_num_syms at 0x.*not in the dump"):
        decode_kallsyms(empty, vmcoreinfo_for(image))


def test_wrong_stext_is_refused() -> None:
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    with pytest.raises(CorruptDumpError, match="_stext"):
        decode_kallsyms(memory_with(image), vmcoreinfo_for(image, stext=STEXT + 0x1000))


def _patched(image: KallsymsImage, table: str, offset: int, data: bytes) -> KallsymsImage:
    at = image.symbols[table] - image.base + offset
    buf = bytearray(image.data)
    buf[at:at + len(data)] = data
    return KallsymsImage(image.base, bytes(buf), image.symbols)


@pytest.mark.parametrize(("table", "offset", "data", "error"), [
    ("kallsyms_num_syms", 0, b"\0\0\0\0", CorruptDumpError),
    ("kallsyms_num_syms", 0, b"\xff\xff\xff\x7f", CorruptDumpError),
    ("kallsyms_num_syms", 0, b"\x00\x10\x00\x00", CorruptDumpError),   # more symbols than names
    ("kallsyms_names", 0, b"\xff" * 64, CorruptDumpError),
    ("kallsyms_names", 40, bytes(range(1, 200)), CorruptDumpError),
    ("kallsyms_token_index", 0, b"\xff\xff" * 256, CorruptDumpError),  # tokens past the table
    ("kallsyms_offsets", 0, b"\x01\x02\x03\x04" * 8, CorruptDumpError),  # addresses no longer sorted
])
def test_corrupt_tables_raise_typed_errors(table: str, offset: int, data: bytes, error: type[Exception]) -> None:
    image = _patched(encode(make_rows(long_name=True, percpu=True), "absolute-percpu"), table, offset, data)
    with pytest.raises(error):
        decode_kallsyms(memory_with(image), vmcoreinfo_for(image))


_FUZZ_IMAGE = encode(make_rows(long_name=True, percpu=True, count=300), "absolute-percpu")


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_FUZZ_IMAGE.data) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzzed_tables_decode_or_raise_typed_errors(flips: list[tuple[int, int]]) -> None:
    buf = bytearray(_FUZZ_IMAGE.data)
    for pos, value in flips:
        buf[pos] = value
    image = KallsymsImage(_FUZZ_IMAGE.base, bytes(buf), _FUZZ_IMAGE.symbols)
    tables = parse_or_kcrash_error(lambda: decode_kallsyms(memory_with(image), vmcoreinfo_for(image)))
    if isinstance(tables, KcrashError):
        return
    assert len(tables.names) == len(tables.kinds) == len(tables.addresses)
    assert tables.names[tables.names.index("_stext")] == "_stext"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["kallsyms_names", "kallsyms_token_table", "kallsyms_token_index", "kallsyms_offsets",
                        "kallsyms_markers"]), st.integers(0, 4096), st.binary(min_size=1, max_size=256))
def test_random_table_bytes_decode_or_raise_typed_errors(table: str, offset: int, junk: bytes) -> None:
    if table not in _FUZZ_IMAGE.symbols:
        return
    image = _patched(_FUZZ_IMAGE, table, offset, junk)
    parse_or_kcrash_error(lambda: decode_kallsyms(memory_with(image), vmcoreinfo_for(image)))


def test_absurd_counts_are_cheap() -> None:
    for count in (1 << 24, (1 << 24) + 1, 2**32 - 1):
        image = _patched(_FUZZ_IMAGE, "kallsyms_num_syms", 0, count.to_bytes(4, "little"))
        assert peak_allocation(lambda i=image: decode_kallsyms(memory_with(i), vmcoreinfo_for(i))) < MEMORY_CAP


def test_encoder_refuses_what_it_cannot_write() -> None:
    rows = make_rows(long_name=True, percpu=False)
    with pytest.raises(ValueError, match="address encoding"):
        encode_kallsyms(rows, base=TABLES, address_encoding="relative-to-the-moon")
    huge = [("t", "x" * 600 + "".join(chr(0x21 + i % 90) for i in range(600)), STEXT)]
    with pytest.raises(ValueError, match="tokens"):
        encode_kallsyms(huge, base=TABLES, big_lengths=False)


def _rewrite_payload(path: Path, edit: Callable[[bytearray, int], None]) -> None:
    # edit the payload (prefix positions, then hashes; u32 each) and keep the file consistent
    head, facts, payload = path.read_bytes().split(b"\n", 2)
    fields = json.loads(facts)
    changed = bytearray(payload)
    edit(changed, fields["num_syms"])
    fields["payload_crc32"] = zlib.crc32(changed)  # a consistent file: its content must be checked
    path.write_bytes(b"\n".join([head, json.dumps(fields).encode(), bytes(changed)]))


def _zero_hashes(payload: bytearray, num: int) -> None:
    payload[num * 4:] = bytes(num * 4)


def _shift_a_prefix(payload: bytearray, num: int) -> None:
    payload[40:44] = (int.from_bytes(payload[40:44], "little") + 1).to_bytes(4, "little")


@pytest.mark.parametrize("edit", [_zero_hashes, _shift_a_prefix])
def test_stale_cache_with_the_same_facts_is_replaced(tmp_path: Path, edit: Callable[[bytearray, int], None]) -> None:
    # Same build-id, symbols, tokens and table bytes, but a cached reading that is wrong (hashes that
    # do not find _stext; prefix positions that do not chain): dropped, decoded again and rewritten.
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    path = tmp_path / "kallsyms" / f"{BUILD_ID}.bin"
    good = path.read_bytes()
    _rewrite_payload(path, edit)
    tables = decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    assert not tables.from_cache and tables.names.index("_stext") == 5
    assert path.read_bytes() == good


def test_cache_of_other_names_is_not_used(tmp_path: Path) -> None:
    # Same count, tokens and position but other name bytes (a name renamed in place): the names'
    # CRC-32 differs, so the cached reading is not trusted.
    rows = make_rows(long_name=False, percpu=True)
    image = encode(rows, "absolute-percpu")
    decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    pos, data = image.symbols["kallsyms_names"] - image.base, bytearray(image.data)
    for _ in range(10):  # to the 11th name (a random word: the tokens after its kind letter differ)
        pos += 1 + data[pos]
    assert data[pos] >= 3 and data[pos + 2] != data[pos + 3]
    data[pos + 2], data[pos + 3] = data[pos + 3], data[pos + 2]
    other = KallsymsImage(image.base, bytes(data), image.symbols)
    assert not decode_kallsyms(memory_with(other), vmcoreinfo_for(other), tmp_path).from_cache


def test_a_damaged_cache_file_reads_as_absent(tmp_path: Path) -> None:
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path)
    path = tmp_path / "kallsyms" / f"{BUILD_ID}.bin"
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-40] ^= 0x01  # one bit of the name order
    path.write_bytes(bytes(flipped))
    assert not decode_kallsyms(memory_with(image), vmcoreinfo_for(image), tmp_path).from_cache
    assert path.read_bytes() == good


def test_compressed_names_decode_on_access_like_a_list() -> None:
    names = ["_text", "startup_64", "x", "_stext", "dup", "dup", "_end"]
    rows = [("T", n, STEXT + 16 * (i - 3)) for i, n in enumerate(names)]
    image = encode_kallsyms(rows, base=TABLES, address_encoding="base-relative")
    lazy = decode_kallsyms(memory_with(image), vmcoreinfo_for(image)).names
    assert isinstance(lazy, KallsymsNames)
    assert len(lazy) == len(names) and list(lazy) == names and lazy == names
    assert [lazy[i] for i in range(-len(names), len(names))] == names + names
    assert lazy[1:4] == names[1:4]
    for name in names:
        assert lazy.index(name) == names.index(name) and name in lazy
    assert lazy.index("dup", 5) == 5 and lazy.positions_of("dup") == [4, 5]
    for absent in ("du", "up", "_", "", "x\0y", "ü", "_stex", "_stextt"):
        assert absent not in lazy and lazy.positions_of(absent) == []
        with pytest.raises(ValueError):
            lazy.index(absent)
    with pytest.raises(IndexError):
        lazy[len(names)]


@given(st.lists(st.text(alphabet="abcdefgh_0123456789.$", min_size=1, max_size=40), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None)
def test_name_hashes_equal_the_hash_of_the_expanded_name(words: list[str]) -> None:
    # The vectorized per-token hash equals name_hash of every expanded name, whatever the tokens.
    rows = [("t", "_stext", STEXT)] + [("t", w, STEXT + 16 * (i + 1)) for i, w in enumerate(words)]
    image = encode_kallsyms(rows, base=TABLES, address_encoding="base-relative")
    names = decode_kallsyms(memory_with(image), vmcoreinfo_for(image)).names
    assert isinstance(names, KallsymsNames)
    assert names.hashes.tolist() == [name_hash(n.encode()) for n in ["_stext", *words]]
    for w in words:
        assert names.index(w) == ["_stext", *words].index(w)


@pytest.mark.parametrize(("count", "long_name"), [(600, True), (600, False), (252, False), (1021, True)])
def test_markers_walk_finds_the_prefixes_the_byte_walk_finds(count: int, long_name: bool) -> None:
    # kallsyms_markers (every 256th name's offset) lets the chunks be walked side by side; the last
    # chunk may be short; a marker that is off by one byte, or a limit before the end, is refused.
    rows = make_rows(long_name=long_name, percpu=True, count=count)
    image = encode(rows, "absolute-percpu")
    start = image.symbols["kallsyms_names"] - image.base
    data = image.data[start:image.symbols["kallsyms_token_table"] - image.base]
    walked = walk_names(data, len(rows), big=True)
    assert walked is not None
    heads, end, high = walked
    markers = np.asarray(heads[::256], dtype=np.int64)
    found = walk_names_by_markers(data, markers, len(rows), big=True, limit=len(data))
    assert found is not None
    assert found[0].tolist() == heads and found[1:] == (end, high)
    assert walk_names_by_markers(data, markers, len(rows), big=True, limit=end - 1) is None
    if len(markers) > 1:
        markers[-1] += 1
        assert walk_names_by_markers(data, markers, len(rows), big=True, limit=len(data)) is None
    assert walk_names_by_markers(data, markers[:1], len(rows) + 256, big=True, limit=len(data)) is None


def test_a_table_far_above_the_names_reads_at_most_the_names_cap() -> None:
    # VMCOREINFO names a kallsyms table 1 GiB above kallsyms_names (the token tables are moved below
    # the image) in a dump readable up to the top of the address space: the names are read up to
    # _NAMES_CAP, not up to that table.
    image = encode(make_rows(long_name=False, percpu=True), "absolute-percpu")
    token_table, token_index = image.symbols["kallsyms_token_table"], image.symbols["kallsyms_token_index"]
    moved = image.data[token_table - image.base:]
    low = image.base - 0x1000
    data = moved + bytes(0x1000 - len(moved)) + image.data
    sizes: list[int] = []

    def read(address: int, size: int) -> bytes:
        sizes.append(size)
        if size > 4 * kallsyms._NAMES_CAP:  # the unbounded read would allocate GiBs here
            raise AssertionError(f"read of {size:#x} bytes")
        chunk = data[address - low:address - low + size]
        return chunk + bytes(size - len(chunk))

    segments = SegmentMap()
    segments.add_segment(low, (1 << 64) - low, read, physical=False)
    symbols = {**image.symbols, "kallsyms_token_table": low, "kallsyms_token_index": low + token_index - token_table,
               "kallsyms_seqs_of_names": image.symbols["kallsyms_names"] + (1 << 30)}
    lines = [f"SYMBOL(_stext)={STEXT:x}", *(f"SYMBOL({k})={v:x}" for k, v in symbols.items())]
    info = parse_vmcoreinfo("\n".join(lines))
    start = time.monotonic()
    tables = decode_kallsyms(MemoryReader(segments), info)
    assert time.monotonic() - start < 1
    assert max(sizes) <= kallsyms._NAMES_CAP
    assert len(tables.names) == len(make_rows(long_name=False, percpu=True)) and tables.stext == STEXT
