"""Property tests of the ELF core reader on hostile headers: ``Elf_Ehdr`` and ``Elf_Phdr`` fields and
the PT_NOTE segment set to arbitrary values must end in a CorruptDumpError with the file offset (or
a readable dump), in bounded time and memory."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from support.dumpfuzz import original, read_everything
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

_EHDR64 = [(0x10, "<H"), (0x12, "<H"), (0x20, "<Q"), (0x28, "<Q"), (0x30, "<I"), (0x36, "<H"), (0x38, "<H"),
           (0x3A, "<H"), (0x3C, "<H")]
_PHDR64 = [(0, "<I"), (4, "<I"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "<Q"), (40, "<Q"), (48, "<Q")]
_LIMITS = {"<H": 2**16 - 1, "<I": 2**32 - 1, "<Q": 2**64 - 1}


def _phoff(data: bytes) -> int:
    return int(struct.unpack_from("<Q", data, 0x20)[0])


@st.composite
def _damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(original("elf")[0])
    phoff, phnum = _phoff(data), struct.unpack_from("<H", data, 0x38)[0]
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            offset, fmt = draw(st.sampled_from(_EHDR64))
        else:
            rel, fmt = draw(st.sampled_from(_PHDR64))
            offset = phoff + 56 * draw(st.integers(0, phnum - 1)) + rel
        limit = _LIMITS[fmt]
        value = draw(st.one_of(st.integers(0, limit), st.sampled_from([0, 1, 4, 56, 0xFFFF, limit, limit // 2])))
        struct.pack_into(fmt, data, offset, value & limit)
    if draw(st.booleans()):  # the notes (right after the program headers)
        pos = phoff + 56 * phnum + draw(st.integers(0, 400))
        junk = draw(st.binary(min_size=1, max_size=32))
        data[pos:pos + len(junk)] = junk
    return bytes(data)


@settings(max_examples=60, deadline=None)
@given(_damaged())
def test_hostile_headers_give_a_dump_or_an_offset(data: bytes) -> None:
    parse_or_kcrash_error(lambda: read_everything(data), seconds=2.0, need_offset=True)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2]), st.sampled_from([1, 2]), st.binary(max_size=400))
def test_random_bytes_after_the_ident(ei_class: int, ei_data: int, rest: bytes) -> None:
    order = "little" if ei_data == 1 else "big"
    head = b"\x7fELF" + bytes([ei_class, ei_data, 1]) + bytes(9) + (4).to_bytes(2, order)
    parse_or_kcrash_error(lambda: read_everything(head + rest), need_offset=True)


def test_absurd_sizes_are_cheap() -> None:
    base = original("elf")[0]
    phoff = _phoff(base)
    note = phoff  # the first program header is PT_NOTE in the synthetic layout
    for offset, fmt, value in [
        (0x38, "<H", 0xFFFF),                  # e_phnum: PN_XNUM with section 0 absent or bogus
        (0x20, "<Q", 2**63),                   # e_phoff
        (note + 32, "<Q", 2**40),              # PT_NOTE p_filesz
        (note + 32, "<Q", (64 << 20) - 8),     # PT_NOTE p_filesz just under the cap
        (phoff + 56 + 32, "<Q", 2**62),        # PT_LOAD p_filesz
        (phoff + 56 + 40, "<Q", 2**63),        # PT_LOAD p_memsz
    ]:
        data = bytearray(base)
        struct.pack_into(fmt, data, offset, value)
        assert peak_allocation(lambda d=bytes(data): read_everything(d)) < MEMORY_CAP, (offset, value)


