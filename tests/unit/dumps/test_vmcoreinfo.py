"""VMCOREINFO parsing: every key kind, hex and decimal as the kernel writes them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

REAL = """OSRELEASE=6.1.0-56-amd64
BUILD-ID=eb4fbcd037e7253717950bf2b93bd5566f47c56f
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffffff82bfb000
OFFSET(uts_namespace.name)=0
SYMBOL(swapper_pg_dir)=ffffffff82a10000
SIZE(page)=64
OFFSET(page._refcount)=52
LENGTH(mem_section)=4096
NUMBER(SECTION_SIZE_BITS)=27
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(phys_base)=0
NUMBER(PHYS_OFFSET)=0x40000000
KERNELOFFSET=10000000
CRASHTIME=1700000000
CONFIG_X86_PAE=y
SRCFILE(pud_page)=arch/x86/include/asm/pgtable.h
"""


def test_every_key_kind() -> None:
    info = parse_vmcoreinfo(REAL.encode() + b"\0\0garbage")
    assert info.osrelease == "6.1.0-56-amd64"
    assert info.build_id == "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
    assert info.page_size == 4096
    assert info.get_symbol("swapper_pg_dir") == 0xFFFFFFFF82A10000
    assert info.get_size("page") == 64
    assert info.get_offset("page._refcount") == 52
    assert info.get_length("mem_section") == 4096
    assert info.get_number("PAGE_BUDDY_MAPCOUNT_VALUE") == -129
    assert info.get_number("PHYS_OFFSET") == 0x40000000
    assert info.kerneloffset == 0x10000000
    assert info.crashtime == 1700000000
    assert info.has_config("X86_PAE") and not info.has_config("PGTABLE_4")
    assert info.srcfiles["pud_page"].endswith("pgtable.h")
    assert info.get_symbol_or_none("nope") is None


def test_missing_keys_raise_lookup_error() -> None:
    info = parse_vmcoreinfo("PAGESIZE=x\n")
    assert info.page_size is None
    try:
        info.get_symbol("_stext")
    except LookupError:
        pass
    else:
        raise AssertionError("expected LookupError")


@given(st.binary(max_size=2000))
def test_never_raises(data: bytes) -> None:
    parse_vmcoreinfo(data)


_KEYS = st.sampled_from(["SYMBOL(prb)", "SIZE(page)", "OFFSET(a.b)", "LENGTH(x)", "NUMBER(y)", "SRCFILE(z)",
                         "PAGESIZE", "KERNELOFFSET", "CRASHTIME", "BUILD-ID", "OSRELEASE", "CONFIG_X", "SYMBOL(",
                         "NUMBER()", "", "=", "\0"])
_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(["0x", "-0x1", "1_000", "  7 ", "9" * 5000, "f" * 5000,
                                                           "0b101", "\u0661", "-"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=20), st.booleans())
def test_hostile_lines_parse_in_bounded_time(lines: list[tuple[str, str]], as_bytes: bool) -> None:
    text = "".join(f"{k}={v}\n" for k, v in lines)
    data: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    info = parse_or_kcrash_error(lambda: parse_vmcoreinfo(data))
    assert isinstance(info, VmcoreInfo)
    for prop in (info.page_size, info.kerneloffset, info.crashtime, info.osrelease, info.build_id):
        assert prop is None or isinstance(prop, (int, str))


def test_a_huge_note_is_parsed_in_linear_memory() -> None:
    data = b"NUMBER(x)=" + b"9" * (8 << 20) + b"\n" + b"A=1\n" * 100_000
    assert peak_allocation(lambda: parse_vmcoreinfo(data)) < MEMORY_CAP
