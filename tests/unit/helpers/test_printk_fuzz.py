"""Property tests of the printk ring reader (``get_printk_log``) over fake kernel memory: whatever the
ring bytes, the ring heads and the VMCOREINFO offsets say, it returns records or a kcrash error, in
bounded time, and ring sizes from the dump do not make it allocate them."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.helpers.linux.printk import PrintkLog, format_dmesg, get_printk_log
from kcrash.memory import MemoryReader, SegmentMap
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

PRB = 0xFFFFFFFF82000000  # SYMBOL(prb): a pointer to the ring buffer
RB = 0xFFFFFFFF82001000
DESCS, INFOS, DATA = 0xFFFF888000100000, 0xFFFF888000200000, 0xFFFF888000300000
# Linux 6.1 x86-64 offsets and sizes
OFFSETS = {
    "printk_ringbuffer.desc_ring": 0, "printk_ringbuffer.text_data_ring": 48, "prb_desc_ring.count_bits": 0,
    "prb_desc_ring.descs": 8, "prb_desc_ring.infos": 16, "prb_desc_ring.head_id": 24, "prb_desc_ring.tail_id": 32,
    "atomic_long_t.counter": 0, "prb_data_ring.size_bits": 0, "prb_data_ring.data": 8, "prb_desc.state_var": 0,
    "prb_desc.text_blk_lpos": 8, "prb_data_blk_lpos.begin": 0, "prb_data_blk_lpos.next": 8, "printk_info.seq": 0,
    "printk_info.ts_nsec": 8, "printk_info.text_len": 16, "printk_info.caller_id": 20,
}
SIZES = {"prb_desc": 24, "printk_info": 88}


def vmcoreinfo(offsets: dict[str, int] | None = None, sizes: dict[str, int] | None = None) -> VmcoreInfo:
    lines = [f"SYMBOL(prb)={PRB:x}"]
    lines += [f"OFFSET({k})={v}" for k, v in (offsets or OFFSETS).items()]
    lines += [f"SIZE({k})={v}" for k, v in (sizes or SIZES).items()]
    return parse_vmcoreinfo("\n".join(lines) + "\n")


def memory(blocks: dict[int, bytes]) -> MemoryReader:
    segments = SegmentMap()
    for base, data in blocks.items():
        segments.add_segment(base, len(data), lambda a, n, b=base, d=data: d[a - b:a - b + n], physical=False)
    return MemoryReader(segments)


def ring_head(count_bits: int, size_bits: int, head_id: int, tail_id: int) -> bytes:
    desc_ring = struct.pack("<I4xQQQQQ", count_bits, DESCS, INFOS, head_id, tail_id, head_id)
    return desc_ring + struct.pack("<I4xQQQ", size_bits, DATA, 0, 0) + bytes(64)


_STATES = st.sampled_from([0, 1, 2, 3]).map(lambda s: s << 62)


@st.composite
def _rings(draw: st.DrawFn) -> dict[int, bytes]:
    count_bits, size_bits = draw(st.integers(0, 5)), draw(st.integers(0, 10))
    count, size = 1 << count_bits, 1 << size_bits
    descs = b"".join(struct.pack("<QQQ", draw(_STATES) | draw(st.integers(0, 2**62 - 1)),
                                 draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)))
                     for _ in range(count))
    blocks = {PRB: struct.pack("<Q", RB),
              RB: ring_head(count_bits, size_bits, draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)))}
    present = draw(st.sets(st.sampled_from(["descs", "infos", "data"])))
    if "descs" in present:
        blocks[DESCS] = descs[:draw(st.integers(0, len(descs)))]
    if "infos" in present:
        blocks[INFOS] = draw(st.binary(min_size=0, max_size=88 * count))
    if "data" in present:
        blocks[DATA] = draw(st.binary(min_size=size, max_size=size))
    return blocks


def _read(mem: MemoryReader, info: VmcoreInfo) -> PrintkLog:
    log = get_printk_log(mem, info)
    format_dmesg(log.records)
    return log


@settings(max_examples=150, deadline=None)
@given(_rings())
def test_hostile_rings_give_records_or_a_kcrash_error(blocks: dict[int, bytes]) -> None:
    result = parse_or_kcrash_error(lambda: _read(memory(blocks), vmcoreinfo()))
    if isinstance(result, PrintkLog):
        assert result.missing >= 0 and len(result.records) + result.missing <= 32


_HOSTILE_NUMBERS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 4096, 2**31, 2**63]))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(OFFSETS) + sorted(SIZES)), _HOSTILE_NUMBERS, min_size=1, max_size=4))
def test_hostile_vmcoreinfo_offsets(changes: dict[str, int]) -> None:
    offsets = {k: changes.get(k, v) for k, v in OFFSETS.items()}
    sizes = {k: changes.get(k, v) for k, v in SIZES.items()}
    blocks = {PRB: struct.pack("<Q", RB), RB: ring_head(4, 9, 3, 0), DESCS: bytes(24 * 16),
              INFOS: bytes(88 * 16), DATA: bytes(512)}
    parse_or_kcrash_error(lambda: _read(memory(blocks), vmcoreinfo(offsets, sizes)))


def test_absurd_ring_sizes_are_cheap() -> None:
    for count_bits, size_bits, mapped in ((26, 31, False), (26, 31, True), (27, 40, False), (2**31, 2**31, False)):
        blocks = {PRB: struct.pack("<Q", RB), RB: ring_head(count_bits, size_bits, 5, 5)}
        if mapped:  # the first page of each ring is there, the rest is not
            blocks.update({DESCS: bytes(4096), INFOS: bytes(4096), DATA: bytes(4096)})
        mem = memory(blocks)
        assert peak_allocation(lambda m=mem: parse_or_kcrash_error(lambda: _read(m, vmcoreinfo()))) < MEMORY_CAP


def test_records_in_present_pages_are_read_when_others_are_missing() -> None:
    # 256 descriptors over two pages, only the first present: record 0 is read, record 200 is missing.
    finalized = 2 << 62
    descs = bytearray(4096)
    struct.pack_into("<QQQ", descs, 0, finalized | 0, 0, 16)
    infos = bytearray(88 * 256)
    struct.pack_into("<QQH", infos, 0, 7, 1_500_000_000, 5)
    struct.pack_into("<QQH", infos, 88 * 200, 8, 0, 5)
    data = (struct.pack("<Q", 0) + b"hello").ljust(1024, b"\0")
    blocks = {PRB: struct.pack("<Q", RB), RB: ring_head(8, 10, 200, 0), DESCS: bytes(descs), INFOS: bytes(infos),
              DATA: data}
    log = get_printk_log(memory(blocks), vmcoreinfo())
    assert [(r.seq, r.text) for r in log.records] == [(7, b"hello")]
    assert log.missing == 201 - 170  # ids 170..200 have (part of) their descriptor in the missing page
