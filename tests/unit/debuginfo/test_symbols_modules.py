"""module_symbols: a module's in-memory Elf64_Sym table (mod->kallsyms) parsed from synthetic memory,
with the strtab read bounded by num_symtab, not by a corrupt st_name."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kcrash.debuginfo.modules import Elf64_Sym, module_symbols
from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.errors import CorruptDumpError, FaultError
from kcrash.memory import MemoryReader, SegmentMap

BASE = 0xFFFFFFFFC0300000
SYMTAB, STRTAB, TYPETAB = BASE + 0x4000, BASE + 0x5000, BASE + 0x6000

# (name, st_info, st_shndx, st_value, st_size); index 0 is the ELF null symbol
ENTRIES = [
    ("", 0, 0, 0, 0),
    ("mod_func", 0x02, 1, BASE + 0x10, 0x20),         # LOCAL FUNC
    ("mod_exported", 0x12, 1, BASE + 0x40, 0x30),     # GLOBAL FUNC
    ("mod_var", 0x11, 3, BASE + 0x2000, 8),           # GLOBAL OBJECT
    ("printk", 0x10, 0, 0, 0),                        # undefined: skipped
    ("$x", 0x00, 1, BASE + 0x10, 0),                  # mapping symbol: skipped
    (".L_local", 0x00, 1, BASE + 0x18, 0),            # assembler local: skipped
    ("weak_fn", 0x22, 1, BASE + 0x80, 4),             # WEAK FUNC
    ("abs_sym", 0x10, 0xFFF1, 0x1234, 0),             # GLOBAL NOTYPE, SHN_ABS
]


def memory(entries: list[tuple[str, int, int, int, int]], *, typetab: bytes = b"") -> MemoryReader:
    strtab = bytearray(b"\0")
    rows = []
    for name, info, shndx, value, size in entries:
        offset = 0
        if name:
            offset = len(strtab)
            strtab += name.encode() + b"\0"
        rows.append((offset, info, 0, shndx, value, size))
    image = bytearray(0x3000)
    symtab = np.array(rows, dtype=Elf64_Sym).tobytes()
    image[0:len(symtab)] = symtab
    image[0x1000:0x1000 + len(strtab)] = strtab
    image[0x2000:0x2000 + len(typetab)] = typetab
    data = bytes(image)
    segments = SegmentMap()
    segments.add_segment(SYMTAB, len(data), lambda a, n: data[a - SYMTAB:a - SYMTAB + n], physical=False)
    return MemoryReader(segments)


def test_symbols_and_kinds_from_elf() -> None:
    syms = module_symbols(memory(ENTRIES), SYMTAB, len(ENTRIES), STRTAB, "m")
    assert syms == [Symbol("mod_func", BASE + 0x10, 0x20, "t", "m"),
                    Symbol("mod_exported", BASE + 0x40, 0x30, "T", "m"),
                    Symbol("mod_var", BASE + 0x2000, 8, "D", "m"),
                    Symbol("weak_fn", BASE + 0x80, 4, "W", "m"),
                    Symbol("abs_sym", 0x1234, 0, "A", "m")]


def test_kinds_from_typetab() -> None:
    types = b"UtrdUttta"
    syms = module_symbols(memory(ENTRIES, typetab=types), SYMTAB, len(ENTRIES), STRTAB, "m", typetab=TYPETAB)
    assert [s.kind for s in syms] == ["t", "r", "d", "t", "a"]


def test_kinds_stored_in_st_info_before_5_2() -> None:
    # add_kallsyms() of old kernels overwrote st_info with the nm letter
    old = [("", 0, 0, 0, 0), ("f", ord("t"), 1, BASE, 4), ("v", ord("D"), 2, BASE + 8, 4)]
    assert [s.kind for s in module_symbols(memory(old), SYMTAB, 3, STRTAB, "m")] == ["t", "D"]


def test_lookup_through_a_symbol_table() -> None:
    syms = module_symbols(memory(ENTRIES), SYMTAB, len(ENTRIES), STRTAB, "m")
    table = SymbolTable([], [], [])
    table.add_module("m", BASE, 0x1000, syms)
    assert table.format_address(BASE + 0x45) == "mod_exported+0x5/0x40 [m]"
    assert table.address_of("mod_var") == BASE + 0x2000


def test_empty_and_corrupt_tables() -> None:
    mem = memory(ENTRIES)
    assert module_symbols(mem, SYMTAB, 0, STRTAB, "m") == []
    with pytest.raises(CorruptDumpError, match="num_symtab"):
        module_symbols(mem, SYMTAB, 1 << 30, STRTAB, "m")
    with pytest.raises(FaultError):
        module_symbols(mem, SYMTAB - 0x10000, 4, STRTAB, "m")
    unterminated = memory([("", 0, 0, 0, 0), ("x", 0x12, 1, BASE, 4)], typetab=b"y" * 0x1000)
    # strtab placed so that name 1 starts in the run of "y" bytes that ends with memory
    with pytest.raises(CorruptDumpError, match="not NUL-terminated"):
        module_symbols(unterminated, SYMTAB, 2, TYPETAB + 0xE00, "m")


def test_a_huge_st_name_reads_at_most_ksym_name_len_per_symbol() -> None:
    # st_name near 1 GiB in memory that reads up to the top of the address space: the strtab read
    # is bounded by num_symtab names of KSYM_NAME_LEN (512) bytes, not by st_name (up to 4 GiB),
    # and the name is refused.
    rows = np.array([(0, 0, 0, 0, 0, 0), (0x3F000000, 0x12, 0, 1, BASE, 4)], dtype=Elf64_Sym).tobytes()
    sizes: list[int] = []

    def read(address: int, size: int) -> bytes:
        sizes.append(size)
        if size > 1 << 20:  # the unbounded read would allocate 4 GiB here
            raise AssertionError(f"read of {size:#x} bytes")
        chunk = rows[address - SYMTAB:address - SYMTAB + size] if address >= SYMTAB else b""
        return chunk + bytes(size - len(chunk))

    segments = SegmentMap()
    segments.add_segment(SYMTAB, (1 << 64) - SYMTAB, read, physical=False)
    start = time.monotonic()
    with pytest.raises(CorruptDumpError, match=r"strtab\+0x3f000000 is past the 0x400 bytes"):
        module_symbols(MemoryReader(segments), SYMTAB, 2, STRTAB, "m")
    assert time.monotonic() - start < 1
    assert max(sizes) <= 2 * 512
