"""module_section_starts on a synthetic struct module: mod->sect_attrs' NULL-terminated
grp.bin_attrs, each section's address in the struct module_sect_attr wrapping the file (before
v6.14) or in bin_attribute.private (after), and a module without section attributes."""

from __future__ import annotations

import pytest

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.helpers.linux.module import module_base, module_section_starts, module_size
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFFFFFFC0000000
MOD, ATTRS, POINTERS, FILES, NAMES = BASE, BASE + 0x100, BASE + 0x200, BASE + 0x300, BASE + 0x800
SECTIONS = [(".text", BASE + 0x10000), ("__kcrctab_gpl", BASE + 0x12000), (".init.text", BASE + 0x20000)]


def _program(wrapped: bool) -> tuple[Program, bytearray]:
    # struct attribute {name}; bin_attribute {attr, size, private}; [module_sect_attr {battr, address}];
    # attribute_group {name, bin_attrs}; module_sect_attrs {grp, ...}; module {sect_attrs}
    w = BtfWriter()
    c = w.add_int("char", 1, signed=True, char=True)
    u64 = w.add_int("long unsigned int", 8)
    cp = w.add_ptr(c)
    vp = w.add_ptr(0)
    attr = w.add_struct("attribute", 8, [("name", cp, 0, 0)])
    battr = w.add_struct("bin_attribute", 24, [("attr", attr, 0, 0), ("size", u64, 64, 0), ("private", vp, 128, 0)])
    if wrapped:
        w.add_struct("module_sect_attr", 32, [("battr", battr, 0, 0), ("address", u64, 192, 0)])
    bpp = w.add_ptr(w.add_ptr(battr))
    grp = w.add_struct("attribute_group", 16, [("name", cp, 0, 0), ("bin_attrs", bpp, 64, 0)])
    attrs = w.add_struct("module_sect_attrs", 16, [("grp", grp, 0, 0)])
    w.add_struct("module", 8, [("sect_attrs", w.add_ptr(attrs), 0, 0)])
    memory = bytearray(0x2000)
    segments = SegmentMap()
    segments.add_segment(BASE, len(memory), lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)
    symbols = SymbolTable(["_stext"], [0xFFFFFFFF81000000], "T")
    return Program(MemoryReader(segments), symbols, parse_btf(w.to_bytes())), memory


def _u64(memory: bytearray, address: int, value: int) -> None:
    memory[address - BASE:address - BASE + 8] = value.to_bytes(8, "little")


def _plant(memory: bytearray, wrapped: bool, pointers: int = POINTERS) -> None:
    _u64(memory, MOD, ATTRS)
    _u64(memory, ATTRS + 8, pointers)
    for k, (name, address) in enumerate(SECTIONS):
        file, text = FILES + 32 * k, NAMES + 32 * k
        memory[text - BASE:text - BASE + len(name) + 1] = name.encode() + b"\0"
        _u64(memory, file, text)
        _u64(memory, file + (24 if wrapped else 16), address)
        _u64(memory, pointers + 8 * k, file)
    _u64(memory, pointers + 8 * len(SECTIONS), 0)


@pytest.mark.parametrize("wrapped", [True, False], ids=["module_sect_attr", "bin_attribute.private"])
def test_section_starts(wrapped: bool) -> None:
    prog, memory = _program(wrapped)
    _plant(memory, wrapped)
    mod = Object(prog, prog.pointer_type("struct module"), MOD)
    assert module_section_starts(mod) == SECTIONS


def test_the_file_array_may_cross_a_page() -> None:
    prog, memory = _program(False)
    _plant(memory, False, pointers=BASE + 0xFF8)  # the first pointer on one page, the rest on the next
    assert module_section_starts(Object(prog, prog.pointer_type("struct module"), MOD)) == SECTIONS


def test_no_section_attributes() -> None:
    prog, _memory = _program(True)
    assert module_section_starts(Object(prog, prog.pointer_type("struct module"), MOD)) == []


_MOD_MEM_TYPES = [("MOD_TEXT", 0), ("MOD_DATA", 1), ("MOD_RODATA", 2), ("MOD_RO_AFTER_INIT", 3),
                  ("MOD_INIT_TEXT", 4), ("MOD_INIT_DATA", 5), ("MOD_INIT_RODATA", 6), ("MOD_MEM_NUM_TYPES", 7),
                  ("MOD_INVALID", -1)]


def _mem_program(enum: list[tuple[str, int]] | None) -> Program:
    # struct module_memory {base, size}; struct module {mem[7]}; enum mod_mem_type when given.
    # mem[k] has size 0x1000 << k, so the sum names the regions counted.
    w = BtfWriter()
    u64 = w.add_int("long unsigned int", 8)
    i32 = w.add_int("int", 4, signed=True)
    mm = w.add_struct("module_memory", 16, [("base", u64, 0, 0), ("size", u64, 64, 0)])
    w.add_struct("module", 7 * 16, [("mem", w.add_array(mm, 7, i32), 0, 0)])
    if enum is not None:
        w.add_enum("mod_mem_type", 4, enum, signed=True)
    memory = bytearray(0x1000)
    for k in range(7):
        _u64(memory, MOD + 16 * k, BASE + 0x10000 * (k + 1))
        _u64(memory, MOD + 16 * k + 8, 0x1000 << k)
    segments = SegmentMap()
    segments.add_segment(BASE, len(memory), lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)
    return Program(MemoryReader(segments), SymbolTable(["_stext"], [0xFFFFFFFF81000000], "T"),
                   parse_btf(w.to_bytes()))


@pytest.mark.parametrize(("enum", "core"), [
    (_MOD_MEM_TYPES, (0, 1, 2, 3)),
    # the constants decide, not the position: a kernel whose init text came second
    ([("MOD_TEXT", 0), ("MOD_INIT_TEXT", 1), ("MOD_DATA", 2), ("MOD_MEM_NUM_TYPES", 3)], (0, 2)),
    (None, (0, 1, 2, 3)),  # no enum in the BTF: the v6.4 layout
], ids=["v6.4", "reordered", "no-enum"])
def test_module_size_counts_the_core_mod_mem_types(enum: list[tuple[str, int]] | None,
                                                   core: tuple[int, ...]) -> None:
    prog = _mem_program(enum)
    mod = Object(prog, prog.pointer_type("struct module"), MOD)
    assert module_size(mod) == sum(0x1000 << k for k in core)
    assert module_base(mod) == BASE + 0x10000
