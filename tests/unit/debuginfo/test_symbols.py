"""SymbolTable: the kernel's address-lookup semantics (first alias, size to the next symbol, kernel
ranges), %pS formatting, name lookup and module symbols."""

from __future__ import annotations

import pytest

from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.errors import SymbolNotFoundError

STEXT = 0xFFFFFFFF81000000
MOD = 0xFFFFFFFFC0200000

ROWS = [
    ("A", "__per_cpu_start", 0), ("A", "runqueues", 0x31C40), ("A", "__per_cpu_end", 0x35000),
    ("T", "startup_64", STEXT), ("T", "_stext", STEXT), ("T", "_text", STEXT),
    ("T", "secondary_startup_64", STEXT + 0x70),
    ("t", "helper", STEXT + 0x100), ("t", "helper", STEXT + 0x180),  # two static functions, same name
    ("T", "do_work", STEXT + 0x200),
    ("T", "_etext", STEXT + 0x1000),
    ("D", "init_uts_ns", STEXT + 0x2000),
    ("B", "_end", STEXT + 0x3000), ("B", "__brk_limit", STEXT + 0x3000),
    ("d", "after_end", STEXT + 0x4000),
]


def table() -> SymbolTable:
    return SymbolTable([n for _, n, _ in ROWS], [a for _, _, a in ROWS], [k for k, _, _ in ROWS])


def test_address_lookup_follows_the_kernel() -> None:
    t = table()
    assert t.kernel_ranges == [(STEXT, STEXT + 0x3000)]  # data symbols present: [_stext, _end)
    sym, off = t.symbolize(STEXT + 0x10)
    assert (sym.name, sym.address, sym.size, sym.kind, off) == ("startup_64", STEXT, 0x70, "T", 0x10)
    assert t.symbolize(STEXT + 0x1ff)[0] == Symbol("helper", STEXT + 0x180, 0x80, "t")
    assert t.symbolize(STEXT + 0x2fff)[0].name == "init_uts_ns"
    assert t.symbolize_or_none(STEXT + 0x3000) is None   # _end is outside the image
    assert t.symbolize_or_none(STEXT - 1) is None
    assert t.symbolize_or_none(0x31C40) is None          # per-CPU offsets never resolve by address
    assert t.symbolize_or_none(-5) is None
    with pytest.raises(SymbolNotFoundError):
        t.symbolize(0x10)


def test_aliases_are_deterministic() -> None:
    t = table()
    sym = t.symbolize(STEXT)[0]
    assert sym.name == "startup_64"  # the first of the aliases in table order, like %pS
    assert [s.name for s in t.get_aliases(sym)] == ["startup_64", "_stext", "_text"]
    assert t.get_aliases(Symbol("x", STEXT + 1, 0, "t")) == []


def test_format_address_like_pS() -> None:
    t = table()
    assert t.format_address(STEXT + 0x205) == "do_work+0x5/0xe00"
    assert t.format_address(STEXT + 0x70) == "secondary_startup_64+0x0/0x90"
    assert t.format_address(0x31C40) == "0x31c40"
    assert t.format_address(MOD) == "0xffffffffc0200000"


def test_name_lookup() -> None:
    t = table()
    assert t.address_of("runqueues") == 0x31C40
    assert t.get_symbol_by_name("helper").address == STEXT + 0x100  # kallsyms_lookup_name: lowest address
    assert [s.address for s in t.iter_symbols_by_name("helper")] == [STEXT + 0x100, STEXT + 0x180]
    assert t.get_symbol_by_name("_end").size == 0x1000  # size is the distance to the next symbol
    assert t.get_symbol_by_name("after_end").size == 0  # the last symbol of all
    assert t.has_symbol("do_work") and not t.has_symbol("nope")
    with pytest.raises(SymbolNotFoundError, match="nope"):
        t.get_symbol_by_name("nope")
    with pytest.raises(LookupError):
        t.address_of("nope")


def test_text_only_kallsyms_ranges() -> None:
    rows = [("T", "_stext", STEXT), ("T", "f", STEXT + 0x10), ("T", "_etext", STEXT + 0x100),
            ("T", "_sinittext", STEXT + 0x800), ("t", "init_f", STEXT + 0x810), ("T", "_einittext", STEXT + 0x900)]
    t = SymbolTable.from_symbols(Symbol(n, a, 0, k) for k, n, a in rows)
    assert t.kernel_ranges == [(STEXT, STEXT + 0x100), (STEXT + 0x800, STEXT + 0x900)]
    assert t.symbolize_or_none(STEXT + 0x200) is None
    assert t.format_address(STEXT + 0x820) == "init_f+0x10/0xf0"


def _module_symbols() -> list[Symbol]:
    # symbol-table order, not address order; an alias pair and a data symbol in another region
    return [Symbol("mod_data", MOD + 0x5000, 8, "d", "m"), Symbol("mod_b", MOD + 0x40, 0x10, "t", "m"),
            Symbol("mod_a", MOD + 0x10, 0x10, "t", "m"), Symbol("mod_a_alias", MOD + 0x10, 0x10, "T", "m")]


def test_module_symbols_and_ranges() -> None:
    t = table()
    t.add_module("m", MOD, 0x1000, _module_symbols(), ranges=[(MOD + 0x5000, 0x1000)])
    assert t.format_address(MOD + 0x15) == "mod_a+0x5/0x30 [m]"
    assert t.format_address(MOD + 0x45) == "mod_b+0x5/0xfc0 [m]"  # the last text symbol ends with the region
    assert t.format_address(MOD + 0x5004) == "mod_data+0x4/0x1000 [m]"
    assert t.format_address(MOD + 0x8) == "0xffffffffc0200008"   # inside the module, before any symbol
    assert t.symbolize_or_none(MOD + 0x3000) is None               # between regions
    assert t.get_symbol_by_name("mod_b").module == "m"
    assert t.get_symbol_by_name("mod_b", module="m").size == 0xFC0
    assert not t.has_symbol("mod_b", module="vmlinux") and not t.has_symbol("do_work", module="m")
    assert t.has_symbol("do_work", module="vmlinux") and not t.has_symbol("do_work", module="other")
    assert [s.name for s in t.get_aliases(t.get_symbol_by_name("mod_a"))] == ["mod_a", "mod_a_alias"]
    assert t.num_symbols() == len(ROWS) + 4
    assert [s.name for s in t.iter_symbols()][-4:] == ["mod_a", "mod_a_alias", "mod_b", "mod_data"]
    assert list(t.iter_modules()) == ["m"]
    with pytest.raises(SymbolNotFoundError, match="in module m"):
        t.get_symbol_by_name("do_work", module="m")


def test_module_replace_and_remove() -> None:
    t = table()
    t.add_module("m", MOD, 0x1000, _module_symbols())
    t.add_module("m", MOD + 0x10000, 0x1000, [Symbol("moved", MOD + 0x10000, 4, "t", "m")])
    assert t.symbolize_or_none(MOD + 0x15) is None
    assert t.format_address(MOD + 0x10001) == "moved+0x1/0x1000 [m]"
    t.remove_module("m")
    assert t.symbolize_or_none(MOD + 0x10001) is None and t.num_symbols() == len(ROWS)


def test_bulk_addresses_are_read_only() -> None:
    addrs = table().kernel_addresses()
    assert list(addrs[:3]) == [0, 0x31C40, 0x35000]
    with pytest.raises(ValueError):
        addrs[0] = 1


def test_mismatched_columns() -> None:
    with pytest.raises(ValueError):
        SymbolTable(["a"], [1, 2], ["t"])


def _sized_module(t: SymbolTable, *, sections: list[int] | None = None) -> None:
    # ELF sizes kept (sized=True): aliases of different sizes, a sizeless label, data in a 2nd region
    syms = [Symbol("mod_a", MOD + 0x10, 0x10, "t", "m"), Symbol("mod_a_alias", MOD + 0x10, 0x20, "T", "m"),
            Symbol("mod_b", MOD + 0x40, 0x10, "t", "m"), Symbol("__crc_x", MOD + 0x60, 0, "r", "m"),
            Symbol("mod_data", MOD + 0x5000, 8, "d", "m")]
    t.add_module("m", MOD, 0x1000, syms, ranges=[(MOD + 0x5000, 0x1000)], sized=True,
                 sections=[MOD, MOD + 0x80, MOD + 0x5000] if sections is None else sections)


def test_containing_symbol_honours_module_sizes() -> None:
    t = table()
    _sized_module(t)
    found = t.containing_symbol_or_none(MOD + 0x15)
    assert found is not None and (found[0].name, found[0].size, found[1]) == ("mod_a", 0x20, 5)  # largest alias
    assert t.containing_symbol_or_none(MOD + 0x2F) is not None
    assert t.containing_symbol_or_none(MOD + 0x30) is None  # past both aliases: padding
    assert t.containing_symbol_or_none(MOD + 0x50) is None
    assert t.containing_symbol_or_none(MOD + 0x5007) is not None and t.containing_symbol_or_none(MOD + 0x5008) is None
    # the kernel's %pS keeps the next-symbol rule (what backtraces and sym print)
    assert t.format_address(MOD + 0x30) == "mod_a+0x20/0x30 [m]"
    assert t.format_address(MOD + 0x50) == "mod_b+0x10/0x20 [m]"
    assert t.symbolize_or_none(MOD + 0x5008) is not None


def test_a_sizeless_module_symbol_ends_at_the_next_section() -> None:
    t = table()
    _sized_module(t)
    found = t.containing_symbol_or_none(MOD + 0x7F)
    assert found is not None and (found[0].name, found[0].size, found[1]) == ("__crc_x", 0x20, 0x1F)
    assert t.containing_symbol_or_none(MOD + 0x80) is None
    t = table()
    _sized_module(t, sections=[])  # no section bounds known: the next symbol (here the region's end)
    found = t.containing_symbol_or_none(MOD + 0x800)
    assert found is not None and (found[0].name, found[0].size) == ("__crc_x", 0x1000 - 0x60)


def test_without_sizes_containing_is_symbolize() -> None:
    t = table()
    t.add_module("m", MOD, 0x1000, _module_symbols(), ranges=[(MOD + 0x5000, 0x1000)])
    for address in (STEXT + 0x150, STEXT + 0x2100, MOD + 0x15, MOD + 0x45, MOD + 0x5004, MOD + 0x8, MOD + 0x3000):
        assert t.containing_symbol_or_none(address) == t.symbolize_or_none(address)
    # an address in a module's data region below its first data symbol is past the text symbol's range
    t.add_module("m", MOD, 0x1000, [Symbol("f", MOD, 0x10, "t", "m")], ranges=[(MOD + 0x5000, 0x1000)])
    assert t.symbolize_or_none(MOD + 0x5004) is not None and t.containing_symbol_or_none(MOD + 0x5004) is None
