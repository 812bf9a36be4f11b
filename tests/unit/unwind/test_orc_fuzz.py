"""Property tests of the ORC table reader on hostile memory: whatever the ip and entry arrays hold
and whatever count and bounds the symbols give, reading a table and looking addresses up ends in
entries or a kcrash error (CorruptDumpError, FaultError), in bounded time and memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.unwind.orc import ORC_FORMATS, OrcTable, OrcTables, vmlinux_orc_table
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

from .conftest import TEXT, FakeMemory

IPS = 0xFFFFFFFF82000000


@st.composite
def _tables(draw: st.DrawFn) -> tuple[FakeMemory, int, int, int]:
    n = draw(st.integers(1, 64))
    mem = FakeMemory()
    ip_bytes = draw(st.binary(min_size=4 * n, max_size=4 * n))
    entry_bytes = draw(st.binary(min_size=6 * n, max_size=6 * n))
    mem.map(IPS, len(ip_bytes) + 16)
    mem.write(IPS, ip_bytes)
    entries = IPS + 0x10000
    mem.map(entries, len(entry_bytes) + 16)
    mem.write(entries, entry_bytes)
    claimed = draw(st.one_of(st.just(n), st.integers(-2, 2 * n), st.sampled_from([0, 2**24, 2**24 + 1, 2**40])))
    return mem, entries, n, claimed


def _read_and_look_up(mem: FakeMemory, entries: int, claimed: int, fmt: str | None, probes: list[int]) -> None:
    tables = OrcTables([OrcTable.from_memory(mem, IPS, entries, claimed, fmt=fmt, name="fuzz")])
    for ip in probes:
        entry = tables.lookup(ip)
        assert entry is None or entry.type
    vmlinux_orc_table(mem, IPS, IPS + 4 * claimed, entries, fmt=fmt)


@settings(max_examples=150, deadline=None)
@given(_tables(), st.one_of(st.none(), st.sampled_from(ORC_FORMATS)),
       st.lists(st.one_of(st.integers(0, 2**64 - 1), st.integers(TEXT - 2**31, TEXT + 2**31)), max_size=8))
def test_hostile_tables_give_entries_or_a_kcrash_error(table: tuple[FakeMemory, int, int, int], fmt: str | None,
                                                      probes: list[int]) -> None:
    mem, entries, _, claimed = table
    parse_or_kcrash_error(lambda: _read_and_look_up(mem, entries, claimed, fmt, probes))


def test_absurd_counts_are_cheap() -> None:
    mem = FakeMemory()
    mem.map(IPS, 4096)
    for count in (2**24, 2**24 + 1, 2**40, -1):
        assert peak_allocation(lambda c=count: OrcTable.from_memory(mem, IPS, IPS, c)) < MEMORY_CAP
        assert peak_allocation(lambda c=count: vmlinux_orc_table(mem, IPS, IPS + 4 * c, IPS)) < MEMORY_CAP
