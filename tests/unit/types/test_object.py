"""Program and Object on the synthetic kernel: variables, members, pointers, arrays, bitfields,
casts, container_of, strings, per-CPU variables, faults; string_() and value arrays cost what is
asked, not the array's whole length for each element."""

from __future__ import annotations

import time

import pytest

from conftest import BASE, SIZE, Kernel
from kcrash.errors import ExpressionError, FaultError, MissingDebugInfoError, SymbolNotFoundError, TypeLookupError
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.model import TypeKind
from kcrash.types.object import Object, cast, container_of, offsetof, reinterpret, sizeof
from kcrash.types.percpu import per_cpu, per_cpu_offset, per_cpu_ptr
from kcrash.types.program import Program


def test_global_from_declaration_table(kernel: Kernel) -> None:
    task = kernel.prog["init_task"]
    assert task.type_.type_name() == "struct task_struct"
    assert task.address_ == kernel.notes["task"]
    assert task.comm.string_() == b"swapper/0"
    assert task.pid.value_() == 7
    assert task.member_("pid") == 7


def test_jiffies_is_volatile_unsigned_long(kernel: Kernel) -> None:
    kernel.put_u64(BASE + 0x3100, (1 << 64) - 5)
    jiffies = kernel.prog["jiffies"]
    assert jiffies.type_.type_name() == "volatile long unsigned int"
    assert jiffies.value_() == (1 << 64) - 5


def test_members_through_pointers_and_arrays(kernel: Kernel) -> None:
    item = kernel.prog.object("struct item", kernel.notes["item0"])
    assert item.magic.value_() == 0xC0FFEE01
    assert item.tag.string_() == b"obj-0"
    assert item.tag[4].value_() == ord("0")
    assert item.name.string_() == b"hello, kernel"
    nxt = item.node.next
    assert nxt.type_.type_name() == "struct list_head *"
    assert int(nxt) == kernel.notes["item1"] + 24
    assert nxt.prev.value_() == kernel.notes["item0"] + 24  # member access dereferences a pointer
    assert nxt[0].address_ == int(nxt) and nxt.deref_().address_ == int(nxt)
    ptr = item.address_of_()
    assert ptr.type_.type_name() == "struct item *"
    assert ptr.id == 0 and (ptr + 1).value_() == kernel.notes["item0"] + 104
    assert ptr[1].address_ == kernel.notes["item0"] + 104 and ptr[-1].address_ == kernel.notes["item0"] - 104
    assert ((ptr + 2) - ptr).value_() == 2


def test_bitfields_anonymous_union_enum_float(kernel: Kernel) -> None:
    item = kernel.prog.object("item_t", kernel.notes["item0"])
    assert (item.a.value_(), item.b.value_(), item.c.value_(), item.neg.value_()) == (1, 5, 9, -3)
    assert item.b.bit_field_size_ == 3 and item.b.bit_offset_ == 1
    assert item.x.value_() == -12345 and item.y.value_() == -12345
    assert item.col.value_() == -1 and str(item.col) == "(enum color)BLUE"
    assert item.big.value_() == 1 << 40
    assert item.ratio.value_() == 1.5
    with pytest.raises(ExpressionError):
        item.b.address_of_()


def test_value_copies_and_struct_values(kernel: Kernel) -> None:
    item = kernel.prog.object("struct item", kernel.notes["item1"])
    copy = item.read_()
    assert copy.address_ is None
    value = copy.value_()
    assert isinstance(value, dict)
    assert value["id"] == 1 and value["c"] == 9 and value["neg"] == -3 and value["y"] == -12345
    assert value["tag"][:5] == list(b"obj-1")
    kernel.put(kernel.notes["item1"] + 4, (99).to_bytes(4, "little"))
    assert copy.id.value_() == 1 and item.id.value_() == 99  # the copy does not change
    assert copy.tag.string_() == b"obj-1"
    assert copy.b.value_() == 5


def test_cast_reinterpret_sizeof_offsetof(kernel: Kernel) -> None:
    prog = kernel.prog
    p = cast("struct item *", Object(prog, "unsigned long", kernel.notes["item2"]))
    assert p.id.value_() == 2
    assert cast("char", Object(prog, "int", 0x1FF)).value_() == -1
    assert cast("_Bool", Object(prog, "int", 7)).value_() is True
    assert cast("unsigned int", Object(prog, "int", -1)).value_() == 0xFFFFFFFF
    assert reinterpret("unsigned int", prog.object("struct item", kernel.notes["item0"])).value_() == 0xC0FFEE01
    assert sizeof(prog.type("struct item")) == 104 and sizeof(p) == 8
    assert offsetof(prog.type("struct item"), "node.prev") == 32
    with pytest.raises(ExpressionError):
        cast("struct item", p)


def test_container_of(kernel: Kernel) -> None:
    node = kernel.prog.object("struct list_head", kernel.notes["item2"] + 24).address_of_()
    item = container_of(node, "struct item", "node")
    assert item.type_.type_name() == "struct item *"
    assert int(item) == kernel.notes["item2"] and item.id.value_() == 2


def test_per_cpu(kernel: Kernel) -> None:
    prog = kernel.prog
    assert prog.is_percpu("runqueues")
    rq = prog["runqueues"]
    assert rq.type_.tag == "item"  # type from the BTF VAR in .data..percpu
    assert per_cpu_offset(prog, 1) == 0x200
    assert per_cpu(prog, "runqueues", 0).id.value_() == 0
    assert per_cpu(prog, rq, 1).id.value_() == 1
    assert int(per_cpu_ptr(prog, rq.address_of_(), 1)) == kernel.notes["item1"]


def test_faults_and_lookup_errors(kernel: Kernel) -> None:
    prog = kernel.prog
    with pytest.raises(FaultError):
        prog.object("int", 0x1000).value_()
    with pytest.raises(SymbolNotFoundError):
        prog["no_such_symbol"]
    with pytest.raises(TypeLookupError, match="declare it"):
        prog["unmapped"]
    with pytest.raises(TypeLookupError):
        prog.type("struct nope")
    with pytest.raises(AttributeError):
        prog["init_task"].nope  # noqa: B018
    assert not hasattr(prog["init_task"], "nope")
    with pytest.raises(ExpressionError):
        prog["init_task"].pid.member_("x")
    with pytest.raises(ExpressionError):
        prog["init_task"][0]
    with pytest.raises(MissingDebugInfoError):
        Program(prog.memory)["init_task"]


def test_declare_overrides(kernel: Kernel) -> None:
    prog = kernel.prog
    prog.declare("init_task", "unsigned int")
    assert prog["init_task"].value_() == 7
    prog.declare("runqueues", "struct list_head")
    assert prog["runqueues"].type_.tag == "list_head"
    prog.declare("init_task", prog.type("struct task_struct *"))
    assert prog["init_task"].type_.kind is TypeKind.POINTER


def test_constants_and_comparisons(kernel: Kernel) -> None:
    prog = kernel.prog
    blue = prog.constant("BLUE")
    assert blue.value_() == -1 and blue == -1 and blue < 0
    assert prog.constant("HUGE_B").value_() == (1 << 64) - 2
    with pytest.raises(TypeLookupError):
        prog.constant("PURPLE")
    one = Object(prog, "int", 1)
    assert one == Object(prog, "long", 1) and one != 2 and one <= 1 and one >= 1 and one > 0
    assert bool(Object(prog, "int", 0)) is False
    assert [2, 3, 4][one] == 3


def test_string_bounds(kernel: Kernel) -> None:
    prog = kernel.prog
    kernel.put(BASE + 0x4000, b"A" * 100)  # no terminator within the limit
    p = Object(prog, "char *", BASE + 0x4000)
    assert p.string_(limit=10) == b"A" * 10
    kernel.put(BASE + SIZE - 3, b"end")  # runs off the end of memory
    with pytest.raises(FaultError):
        Object(prog, "char *", BASE + SIZE - 3).string_()


def test_types_by_c_name(kernel: Kernel) -> None:
    prog = kernel.prog
    assert prog.type("unsigned long").name == "long unsigned int"
    assert prog.type("const char *").type_name() == "const char *"
    assert prog.type("struct item *[4]").type_name() == "struct item *[4]"
    assert prog.type("u64").type_name() == "u64"
    assert prog.type("enum color").size == 4
    assert prog.type("void *").type.kind is TypeKind.VOID
    assert prog.type("struct list_head").sizeof() == 16
    assert prog.array_type("int", 3).sizeof() == 12


def test_a_huge_char_array_reads_only_up_to_the_limit(kernel: Kernel) -> None:
    # char[1 << 30] in memory that reads as far as asked: string_() reads at most ``limit`` bytes
    # (it read the whole array before cutting).
    sizes: list[int] = []

    def read(address: int, size: int) -> bytes:
        sizes.append(size)
        if size > 1 << 20:  # the unbounded read would allocate 1 GiB here
            raise AssertionError(f"read of {size:#x} bytes")
        return b"A" * size

    segments = SegmentMap()
    segments.add_segment(BASE, 1 << 32, read, physical=False)
    prog = Program(MemoryReader(segments), None, kernel.prog.btf)
    huge = Object(prog, prog.array_type("char", 1 << 30), address=BASE)
    start = time.monotonic()
    assert huge.string_() == b"A" * 4096 and huge.string_(limit=10) == b"A" * 10
    assert time.monotonic() - start < 1
    assert max(sizes) <= 4096


def test_the_elements_of_a_value_array_take_linear_time(kernel: Kernel) -> None:
    # Each element of a value copy held the rest of the buffer: the 2048 rows of a char[2048][4096]
    # value copied 8 GiB in all; now each holds its own 4096 bytes.
    count, row = 2048, 4096
    prog = kernel.prog
    array = Object(prog, prog.array_type(prog.array_type("char", row), count),
                   b"".join(f"row {i}".encode().ljust(row, b"\0") for i in range(count)))
    start = time.monotonic()
    rows = list(array)
    assert rows[-1].string_() == b"row 2047" and array[1000].string_() == b"row 1000"
    assert time.monotonic() - start < 1
    assert all(len(r.to_bytes_()) == row for r in rows)
    words = b"".join(i.to_bytes(8, "little") for i in range(1000))
    numbers = Object(prog, prog.array_type("unsigned long", 1000), words)
    assert numbers.value_() == list(range(1000))
