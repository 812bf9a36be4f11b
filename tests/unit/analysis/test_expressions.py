"""What kcrash p and whatis answer: per-CPU variables as crash shows them (by BTF and by address),
crash's cpuspec, globals of unknown type, --declare, and whatis of types, members, globals,
functions and expressions, on a synthetic typed kernel."""

from __future__ import annotations

import pytest

from kcrash.analysis.expressions import (
    PerCpuAddresses,
    declare_globals,
    expression_address,
    parse_cpu_spec,
    pointer_label,
    print_expression,
    whatis,
)
from kcrash.errors import ExpressionError, SymbolNotFoundError
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.cexpr import SymbolObject, evaluate, require_usable
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
AREA = [BASE + 0x1000, BASE + 0x2000, BASE + 0x3000, BASE + 0x4000]  # per-CPU areas of CPUs 0..3
SYMBOLS = {"nr_cpu_ids": BASE + 0x100, "__cpu_possible_mask": BASE + 0x108, "__per_cpu_offset": BASE + 0x200,
           "__per_cpu_start": 0, "__per_cpu_end": 0x800, "stats": 0x40, "mod_counter": 0x900,
           "planted": BASE + 0x600, "do_work": 0xFFFFFFFF81000000}


class _Symbols:
    def address_of(self, name: str) -> int:
        try:
            return SYMBOLS[name]
        except KeyError:
            raise SymbolNotFoundError(name) from None


def _program() -> Program:
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    u = w.add_int("unsigned int", 4)
    ul = w.add_int("long unsigned int", 8)
    w.add_int("long int", 8, signed=True)
    w.add_struct("cpumask", 8, [("bits", w.add_array(ul, 1, i), 0, 0)])
    item = w.add_struct("item", 16, [("id", i, 0, 0), ("flags", u, 32, 0), ("value", ul, 64, 0)])
    w.add_typedef("item_t", item)
    w.add_datasec(".data..percpu", 16, [(w.add_var("stats", item), 0x40, 16)])
    w.add_func("do_work", w.add_func_proto(i, [("n", u)]))
    memory = bytearray(0x5000)

    def put(address: int, value: int, size: int = 8) -> None:
        memory[address - BASE:address - BASE + size] = value.to_bytes(size, "little")

    put(SYMBOLS["nr_cpu_ids"], 4, 4)
    put(SYMBOLS["__cpu_possible_mask"], 0b1011)  # CPUs 0, 1 and 3
    for cpu, area in enumerate(AREA):
        put(SYMBOLS["__per_cpu_offset"] + 8 * cpu, area)
        put(area + 0x40, 100 + cpu, 4)  # stats.id
        put(area + 0x48, cpu * 1000)  # stats.value
        put(area + 0x900, 0x1000 * (cpu + 1) + 0x2A)  # mod_counter (u64, no BTF)
    put(SYMBOLS["planted"], 42, 4)
    segments = SegmentMap()
    segments.add_segment(BASE, len(memory), lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)
    return Program(MemoryReader(segments), _Symbols(), parse_btf(w.to_bytes()))


@pytest.fixture
def prog() -> Program:
    return _program()


@pytest.mark.parametrize(("spec", "cpus"), [
    ("a", [0, 1, 3]), ("all", [0, 1, 3]), ("1", [1]), ("0,3", [0, 3]), ("0-1", [0, 1]), ("3, 0-1", [3, 0, 1]),
])
def test_cpu_spec(spec: str, cpus: list[int]) -> None:
    assert parse_cpu_spec(spec, [0, 1, 3]) == cpus


@pytest.mark.parametrize(("spec", "message"), [
    ("2", "CPU 2 is not a possible CPU"), ("0-2", "CPU 2"), ("x", "bad CPU list"), ("1-", "bad CPU list"),
    ("3-1", "bad CPU range"), ("", "bad CPU list"),
])
def test_bad_cpu_spec(spec: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        parse_cpu_spec(spec, [0, 1, 3])


def test_per_cpu_variable_alone_shows_every_possible_cpu(prog: Program) -> None:
    found = print_expression(prog, "stats")
    assert found == PerCpuAddresses("stats", "struct item stats", 0x40,
                                    ((0, AREA[0] + 0x40), (1, AREA[1] + 0x40), (3, AREA[3] + 0x40)))
    # known per-CPU by its address only (below __per_cpu_end's zero-based space), type unknown
    found = print_expression(prog, "mod_counter")
    assert isinstance(found, PerCpuAddresses) and not found.typed
    assert found.declaration == "mod_counter (type unknown: cast it, *(TYPE *)&mod_counter:CPU)"
    assert found.addresses[2] == (3, AREA[3] + 0x900)


def test_cpu_spec_gives_the_instances(prog: Program) -> None:
    values = print_expression(prog, "stats:a")
    assert isinstance(values, tuple)
    assert [(v.cpu, v.value.id.value_(), v.value.address_) for v in values] == \
        [(0, 100, AREA[0] + 0x40), (1, 101, AREA[1] + 0x40), (3, 103, AREA[3] + 0x40)]
    values = print_expression(prog, " stats : 1,3 ")
    assert isinstance(values, tuple) and [v.cpu for v in values] == [1, 3]
    single = print_expression(prog, "stats:3.value + 1")
    assert isinstance(single, Object) and single.value_() == 3001
    untyped = print_expression(prog, "mod_counter:0")
    assert isinstance(untyped, tuple) and isinstance(untyped[0].value, SymbolObject)
    assert not untyped[0].value.typed_ and untyped[0].value.address_ == AREA[0] + 0x900
    with pytest.raises(ExpressionError, match=r"cast it: \(TYPE\)mod_counter:0 or \*\(TYPE \*\)&mod_counter:0"):
        require_usable(untyped[0].value)
    cast = print_expression(prog, "*(unsigned long *)&mod_counter:1")
    assert isinstance(cast, Object) and cast.value_() == 0x202A
    with pytest.raises(ExpressionError, match="not a per-CPU variable"):
        print_expression(prog, "planted:a")
    with pytest.raises(ExpressionError, match="not a possible CPU"):
        print_expression(prog, "stats:2")


def test_globals_of_unknown_type_and_declare(prog: Program) -> None:
    with pytest.raises(ExpressionError, match=r"no type known for planted at 0xffff888000000600 .*cast it"):
        print_expression(prog, "planted")
    found = print_expression(prog, "((struct item *)&planted)->id * 2")
    assert isinstance(found, Object) and found.value_() == 84
    declare_globals(prog, "item_t planted; unsigned long mod_counter;")
    found = print_expression(prog, "planted.id")
    assert isinstance(found, Object) and found.value_() == 42
    values = print_expression(prog, "mod_counter:a")
    assert isinstance(values, tuple) and [v.value.value_() for v in values] == [0x102A, 0x202A, 0x402A]
    with pytest.raises(ExpressionError, match="bad declaration"):
        declare_globals(prog, "struct *")


@pytest.mark.parametrize(("text", "kind", "declaration", "offset"), [
    ("item", "type", "struct item", None),
    ("item_t", "type", "item_t", None),
    ("struct cpumask", "type", "struct cpumask", None),
    ("item.value", "member", "long unsigned int value", 8),
    ("item_t.flags", "member", "unsigned int flags", 4),
    ("cpumask.bits[0]", "member", "long unsigned int bits[0]", 0),
    ("stats", "variable", "struct item stats", None),
    ("__per_cpu_offset", "variable", "long unsigned int __per_cpu_offset[]", None),
    ("do_work", "function", "int do_work(unsigned int n)", None),
    ("planted", "symbol", "planted at 0xffff888000000600: type unknown (BTF has variable entries for per-CPU "
                          "variables only); cast it: (TYPE)planted or *(TYPE *)&planted", None),
    ("stats:1.id + 1", "expression", "int", None),
    ("&stats:0", "expression", "struct item *", None),
    ("sizeof(item_t)", "expression", "long unsigned int", None),
])
def test_whatis(prog: Program, text: str, kind: str, declaration: str, offset: int | None) -> None:
    found = whatis(prog, text)
    assert (found.kind, found.declaration, found.offset) == (kind, declaration, offset)


def test_whatis_errors(prog: Program) -> None:
    with pytest.raises(ExpressionError, match="has no member 'nope'"):
        whatis(prog, "item.nope")
    with pytest.raises(ExpressionError, match="no symbol or enum constant"):
        whatis(prog, "nothing_at_all")


def test_expression_address(prog: Program) -> None:
    assert expression_address(prog, "planted") == SYMBOLS["planted"]  # unknown type: its address
    assert expression_address(prog, "stats:1") == AREA[1] + 0x40
    assert expression_address(prog, "&stats:3.value") == AREA[3] + 0x48
    assert expression_address(prog, "0x10 + 0x20") == 0x30
    assert expression_address(prog, "-1") == (1 << 64) - 1
    with pytest.raises(ExpressionError, match="per-CPU variable: give a CPU"):
        expression_address(prog, "stats")
    with pytest.raises(ExpressionError, match="cast it"):
        expression_address(prog, "planted + 1")


def test_pointer_label_names_kernel_addresses(prog: Program) -> None:
    from kcrash.debuginfo.symbols import SymbolTable

    text = SYMBOLS["do_work"]
    prog.symbols = SymbolTable(["_stext", "do_work", "_etext", *SYMBOLS],
                               [text - 0x100, text, text + 0x100, *SYMBOLS.values()], ["T", "T", "T", *"D" * 9],
                               kernel_ranges=[(text - 0x100, text + 0x100)])
    assert pointer_label(prog, evaluate(prog, "&do_work")) == "<do_work>"
    assert pointer_label(prog, evaluate(prog, "(char *)&do_work + 4")) == "<do_work+4>"
    assert pointer_label(prog, evaluate(prog, "(char *)0x10")) == ""
    assert pointer_label(prog, evaluate(prog, "(unsigned long)&do_work")) == ""  # not a pointer
