"""ORC tables: bulk parsing from memory, layout detection by validation, lookup."""

from __future__ import annotations

import numpy as np
import pytest

from kcrash.errors import CorruptDumpError
from kcrash.unwind.orc import (
    IDENTITY_REGISTERS,
    ORC_FORMATS,
    ORC_REG_BP,
    ORC_REG_PREV_SP,
    ORC_REG_SP,
    ORC_REG_SP_INDIRECT,
    ORC_REG_UNDEFINED,
    OrcEntry,
    OrcTable,
    OrcTables,
    count_orc_violations,
    decode_orc_entry,
    deduce_register_numbers,
    detect_orc_format,
    encode_orc_entry,
    renumber_registers,
    vmlinux_orc_table,
)

from .conftest import TEXT, FakeMemory, build_table, table_from_rows

CALL8 = OrcEntry(8, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "call", False)
CALL_BP = OrcEntry(16, -16, ORC_REG_BP, ORC_REG_PREV_SP, "call", False)
REGS = OrcEntry(0, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "regs", True)
PARTIAL = OrcEntry(0, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "regs_partial", True)
INDIRECT = OrcEntry(8, 0, ORC_REG_SP_INDIRECT, ORC_REG_UNDEFINED, "call", False)
END = OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "end_of_stack", False)
UNDEF = OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "undefined", False)


def _typical_rows(n: int = 300) -> list[tuple[int, OrcEntry]]:
    kinds = [CALL8, CALL_BP, CALL8, REGS, PARTIAL, INDIRECT, CALL8, END, UNDEF]
    return [(TEXT + 16 * i, kinds[i % len(kinds)]) for i in range(n)]


@pytest.mark.parametrize("fmt", ORC_FORMATS)
@pytest.mark.parametrize("entry", [CALL8, CALL_BP, REGS, PARTIAL, INDIRECT, END, UNDEF])
def test_encode_decode_round_trip(fmt: str, entry: OrcEntry) -> None:
    raw = encode_orc_entry(entry, fmt)
    sp_off, bp_off, word = np.frombuffer(raw, dtype="<i2,<i2,<u2")[0]
    assert len(raw) == 6
    assert decode_orc_entry(int(sp_off), int(bp_off), int(word), fmt) == entry


def test_known_bit_positions() -> None:
    # 6.1: sp_reg 0-3, bp_reg 4-7, type 8-9, end 10; 6.4+: type 8-10, signal 11
    assert decode_orc_entry(8, 0, 0x0105, "end").type == "regs"
    assert decode_orc_entry(0, 0, 0x0400, "end").type == "end_of_stack"
    assert decode_orc_entry(8, 0, 0x0205, "type3").type == "call"
    assert decode_orc_entry(8, 0, 0x0B05, "type3") == OrcEntry(8, 0, 5, 0, "regs", True)
    assert decode_orc_entry(0, 0, 0x0100, "type3").type == "end_of_stack"
    assert decode_orc_entry(8, 0, 0x0505, "signal-end").signal  # signal at bit 10 in 6.3


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_layout_is_detected_from_the_entries(fmt: str) -> None:
    table = table_from_rows(_typical_rows(), fmt)
    words = table.entries["word"]
    assert count_orc_violations(words, fmt) == 0
    assert all(count_orc_violations(words, other) > 0 for other in ORC_FORMATS if other != fmt)
    assert detect_orc_format(words) == fmt


def test_garbage_fits_no_layout() -> None:
    words = np.random.default_rng(1).integers(0, 1 << 16, 5000).astype(np.uint16)
    with pytest.raises(CorruptDumpError, match="fits no known layout"):
        detect_orc_format(words)


def test_ambiguous_table_is_refused() -> None:
    # a table with only CALL/SP entries and no hints decodes alike as 6.1 and 6.3
    table = table_from_rows([(TEXT + i, CALL8) for i in range(10)], "end")
    with pytest.raises(CorruptDumpError):
        detect_orc_format(table.entries["word"])


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_table_read_from_memory_with_place_relative_ips(fmt: str) -> None:
    mem = FakeMemory()
    rows = _typical_rows()
    ip_table, entries, n = build_table(mem, 0xFFFFFFFF82000000, rows, fmt)
    table = vmlinux_orc_table(mem, ip_table, ip_table + 4 * n, entries)
    assert table.format == fmt
    assert [int(ip) for ip in table.ips] == [ip for ip, _ in rows]
    assert table.lookup(TEXT + 16 * 3 + 5) == rows[3][1]  # last ip <= target
    assert table.lookup(TEXT - 1) is None
    assert table.lookup(table.end + 1) is None


def test_unsorted_module_table_is_sorted() -> None:
    rows = [(TEXT + 32, CALL_BP), (TEXT, CALL8), (TEXT + 64, UNDEF)]
    table = table_from_rows(rows, "type3")
    assert table.lookup(TEXT + 40) == CALL_BP
    assert table.lookup(TEXT + 10) == CALL8


def test_implausible_counts_and_bounds() -> None:
    mem = FakeMemory()
    with pytest.raises(CorruptDumpError):
        OrcTable.from_memory(mem, 0x1000, 0x2000, 0)
    with pytest.raises(CorruptDumpError):
        OrcTable.from_memory(mem, 0x1000, 0x2000, 1 << 30)
    with pytest.raises(CorruptDumpError):
        vmlinux_orc_table(mem, 0x2000, 0x1000, 0x3000)


def test_tables_prefer_a_defined_entry_over_another_tables_gap() -> None:
    outer = table_from_rows([(TEXT, CALL8), (TEXT + 0x100, UNDEF), (TEXT + 0x10000, CALL8),
                             (TEXT + 0x10100, UNDEF)], "type3")
    inner = table_from_rows([(TEXT + 0x1000, CALL_BP), (TEXT + 0x1100, UNDEF)], "type3")
    tables = OrcTables([outer, inner])
    assert tables.lookup(TEXT + 0x1010) == CALL_BP
    assert tables.lookup(TEXT + 0x10) == CALL8
    assert tables.lookup(TEXT + 0x2000) == UNDEF
    assert tables.lookup(TEXT + 0x20000) is None


# Linux 7.2's numbering (read off its tables: SP 3, PREV_SP 8, BP_INDIRECT 10; BP, DX, R10, R13 and
# SP_INDIRECT unchanged), as a map from the old ORC_REG_* numbers to the new ones.
_RENUMBERED = {ORC_REG_UNDEFINED: 0, ORC_REG_PREV_SP: 8, 2: 2, ORC_REG_BP: 4, ORC_REG_SP: 3, 6: 6, 7: 7,
               8: 10, ORC_REG_SP_INDIRECT: 9}
BP_IND = OrcEntry(-40, 0, 8, ORC_REG_UNDEFINED, "call", False)


def _renumbered_words(entries: np.ndarray) -> np.ndarray:
    out = entries.copy()
    word = out["word"].astype(np.int64)
    sp, bp = word & 0xF, (word >> 4) & 0xF
    new = [_RENUMBERED[int(s)] | _RENUMBERED[int(b)] << 4 for s, b in zip(sp, bp, strict=True)]
    out["word"] = (word & 0xFF00) | np.array(new)
    return out


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_old_numbering_is_deduced_as_itself(fmt: str) -> None:
    rows = _typical_rows() + [(TEXT + 0x10000 + 16 * i, BP_IND) for i in range(5)]
    assert deduce_register_numbers(table_from_rows(rows, fmt).entries) == IDENTITY_REGISTERS


def test_a_renumbered_table_reads_as_the_old_one() -> None:
    rows = _typical_rows() + [(TEXT + 0x10000 + 16 * i, BP_IND) for i in range(5)]
    plain = table_from_rows(rows, "type3")
    renumbered = _renumbered_words(plain.entries)
    registers = deduce_register_numbers(renumbered)
    assert [registers[new] for new in (3, 8, 4, 10, 9, 6, 7, 2, 0)] == \
        [ORC_REG_SP, ORC_REG_PREV_SP, ORC_REG_BP, 8, ORC_REG_SP_INDIRECT, 6, 7, 2, ORC_REG_UNDEFINED]
    assert registers[5] == registers[1] == 15  # numbers whose old meaning moved elsewhere: unknown
    with pytest.raises(CorruptDumpError):
        detect_orc_format(renumbered["word"])  # as they are, they fit no layout
    fixed = renumber_registers(renumbered, registers)
    assert np.array_equal(fixed["word"], plain.entries["word"])
    assert detect_orc_format(fixed["word"]) == "type3"


def test_renumbered_table_from_memory_decodes_and_modules_follow_vmlinux() -> None:
    rows = _typical_rows() + [(TEXT + 0x10000 + 16 * i, BP_IND) for i in range(5)]
    mem = FakeMemory()
    ip_table, entries, n = build_table(mem, 0xFFFFFFFF82000000, rows, "type3")
    dtype = table_from_rows(rows, "type3").entries.dtype
    mem.write(entries, _renumbered_words(np.frombuffer(mem.read(entries, 6 * n), dtype=dtype)).tobytes())
    table = OrcTable.from_memory(mem, ip_table, entries, n, name="vmlinux")
    assert table.format == "type3" and table.registers[3] == ORC_REG_SP
    assert [table.get_entry(i) for i in range(len(rows))] == [e for _, e in sorted(rows, key=lambda r: r[0])]
    module = OrcTable.from_memory(mem, ip_table, entries, 4, fmt=table.format, name="m", registers=table.registers)
    assert module.get_entry(1) == rows[1][1]
