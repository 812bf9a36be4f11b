"""The C expression evaluator behind ``kcrash p``."""

from __future__ import annotations

import pytest

from conftest import Kernel
from kcrash.errors import ExpressionError, FaultError
from kcrash.types.cexpr import SymbolObject, evaluate


def test_globals_members_subscripts(kernel: Kernel) -> None:
    prog = kernel.prog
    assert evaluate(prog, "init_task.comm").string_() == b"swapper/0"
    assert evaluate(prog, "init_task.comm[1]").value_() == ord("w")
    assert evaluate(prog, "init_task . pid").value_() == 7
    assert evaluate(prog, "(init_task).tasks.next").value_() == kernel.notes["task"] + 24
    assert evaluate(prog, "item_list.next->prev").value_() == kernel.notes["head"]
    assert evaluate(prog, "__per_cpu_offset[1]").value_() == 0x200


def test_address_of_dereference_and_casts(kernel: Kernel) -> None:
    prog = kernel.prog
    item1 = kernel.notes["item1"]
    assert evaluate(prog, "&init_task").value_() == kernel.notes["task"]
    assert evaluate(prog, "*&init_task").address_ == kernel.notes["task"]
    assert evaluate(prog, "&init_task.tasks").type_.type_name() == "struct list_head *"
    obj = evaluate(prog, f"((struct item *){item1:#x})->tag")
    assert obj.string_() == b"obj-1"
    assert evaluate(prog, f"(item_t *){item1}").id.value_() == 1
    assert evaluate(prog, f"*(unsigned int *){item1:#x}UL").value_() == 0xC0FFEE01
    assert evaluate(prog, "(char)0x1ff").value_() == -1
    assert evaluate(prog, "-(int)3").value_() == -3
    assert evaluate(prog, "BLUE").value_() == -1
    assert evaluate(prog, "010").value_() == 8


@pytest.mark.parametrize("text", [
    "", "init_task.", "init_task->pid", "(struct item *", "init_task[", "no_such_thing", "1 +",
    "init_task.comm]", "&1", "*init_task", "(struct nope *)0", "@",
])
def test_bad_expressions_raise_typed_errors(kernel: Kernel, text: str) -> None:
    with pytest.raises(Exception) as exc:
        evaluate(kernel.prog, text)
    from kcrash.errors import KcrashError

    assert isinstance(exc.value, KcrashError), repr(exc.value)


def test_faults_surface(kernel: Kernel) -> None:
    with pytest.raises(FaultError):
        evaluate(kernel.prog, "*(int *)0x10").value_()
    with pytest.raises(ExpressionError, match="column"):
        evaluate(kernel.prog, "init_task.pid )")


def _value(kernel: Kernel, text: str) -> object:
    return evaluate(kernel.prog, text).value_()


@pytest.mark.parametrize(("text", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 4 - 3", 3), ("100 / 10 / 5", 2), ("7 / 2", 3),
    ("-7 / 2", -3), ("7 / -2", -3), ("-7 % 3", -1), ("7 % -3", 1), ("1 << 4 | 1", 17), ("256 >> 4", 16),
    ("0xF0 & 0x3C ^ 0x1", 0x31), ("1 | 2 ^ 3 & 4", 3), ("~0", -1), ("!0", 1), ("!5", 0), ("- -3", 3), ("+4", 4),
    ("1 < 2 == 1", 1), ("2 + 3 == 5 && 1 || 0", 1), ("3 > 4 || 4 >= 4", 1), ("3 <= 2", 0), ("3 != 3", 0),
    ("-1 < 0", 1), ("-1 < 0u", 0), ("-1 == 0xFFFFFFFF", 1), ("-1L == 0xFFFFFFFF", 0), ("0xFFFFFFFFu + 1", 0),
    ("0xFFFFFFFFUL + 1", 1 << 32), ("1UL << 63", 1 << 63), ("2147483647 + 1", -(1 << 31)), ("017 + 1", 16),
    ("BLUE + 1", 0), ("GREEN == 1", 1), ("init_task.pid + 1", 8), ("init_task.pid * 2 - 4", 10),
    ("init_task.comm[1] - 119", 0),
])
def test_operators_follow_c_precedence_and_conversions(kernel: Kernel, text: str, value: int) -> None:
    assert _value(kernel, text) == value


@pytest.mark.parametrize(("text", "type_name"), [
    ("1", "int"), ("2147483648", "long int"), ("0xFFFFFFFF", "unsigned int"), ("4294967295", "long int"),
    ("1u", "unsigned int"), ("1l", "long int"), ("1ul", "long unsigned int"), ("1 + 1L", "long int"),
    ("1u + 1", "unsigned int"), ("1u + 1L", "long int"), ("1UL + 1", "long unsigned int"),
    ("(char)1 + (char)2", "int"), ("init_task.pid < 3", "int"), ("sizeof(int)", "long unsigned int"),
    ("1u << 2L", "unsigned int"), ("init_task.comm + 1", "char *"), ("&init_task.comm[3]", "char *"),
])
def test_result_types(kernel: Kernel, text: str, type_name: str) -> None:
    assert evaluate(kernel.prog, text).type_.type_name() == type_name


def test_sizeof_of_types_and_expressions(kernel: Kernel) -> None:
    for text, size in (("sizeof(struct item)", 104), ("sizeof(item_t)", 104), ("sizeof init_task", 48),
                       ("sizeof(struct item *)", 8), ("sizeof init_task.comm", 16), ("sizeof(u64 [4])", 32),
                       ("sizeof(int) * 2 + 1", 9), ("sizeof (init_task).pid", 4), ("sizeof(char)", 1)):
        assert _value(kernel, text) == size, text
    with pytest.raises(ExpressionError, match="incomplete"):
        evaluate(kernel.prog, "sizeof(struct opaque)")


def test_pointer_arithmetic_is_scaled_by_the_pointee(kernel: Kernel) -> None:
    task, item0 = kernel.notes["task"], kernel.notes["item0"]
    assert _value(kernel, "&init_task + 1") == task + 48
    assert _value(kernel, "1 + &init_task") == task + 48
    assert _value(kernel, f"(struct item *){item0:#x} + 2") == item0 + 208
    assert _value(kernel, f"(struct item *){item0:#x} + 2 - 1") == item0 + 104
    assert _value(kernel, "&init_task.comm[3] - &init_task.comm[0]") == 3
    assert _value(kernel, "(long *)0x1000 - (long *)0xff0") == 2
    item1, item2 = kernel.notes["item1"], kernel.notes["item2"]
    assert _value(kernel, f"((struct item *){item1 - 104:#x})[1].id") == 1
    assert _value(kernel, f"(*((struct item *){item2 - 208:#x} + 2)).id") == 2
    assert _value(kernel, "(void *)0x10 + 1") == 0x11
    assert _value(kernel, "init_task.comm + 1") == task + 5
    assert _value(kernel, "*(init_task.comm + 1)") == ord("w")
    assert _value(kernel, "&init_task == &init_task") == 1
    assert _value(kernel, "&init_task + 1 > &init_task") == 1
    assert _value(kernel, "(unsigned long)&init_task") == task
    with pytest.raises(ExpressionError, match="invalid operands"):
        evaluate(kernel.prog, "&init_task + &init_task")
    with pytest.raises(ExpressionError, match="invalid operands"):
        evaluate(kernel.prog, "&init_task * 2")


def test_casts(kernel: Kernel) -> None:
    item1 = kernel.notes["item1"]
    assert _value(kernel, "(u32)-1") == 0xFFFFFFFF
    assert _value(kernel, "(char)0x1ff + 1") == 0
    assert _value(kernel, "(int)(long)-5") == -5
    assert _value(kernel, f"(_Bool){item1:#x}") is True
    by_value = evaluate(kernel.prog, f"(struct item)*(struct item *){item1:#x}")
    assert by_value.address_ == item1 and by_value.id.value_() == 1
    assert _value(kernel, f"((struct item *){item1:#x})->ratio * 2") == 3.0
    assert _value(kernel, f"((struct item *){item1:#x})->ratio > 1") == 1
    assert _value(kernel, f"-((struct item *){item1:#x})->ratio") == -1.5
    with pytest.raises(ExpressionError, match="no address"):
        evaluate(kernel.prog, "(struct item)1")


def test_logical_operators_short_circuit(kernel: Kernel) -> None:
    assert _value(kernel, "0 && *(int *)0x10") == 0
    assert _value(kernel, "1 || *(int *)0x10") == 1
    with pytest.raises(FaultError):
        evaluate(kernel.prog, "1 && *(int *)0x10")


def test_per_cpu_suffix_places_the_variable_on_a_cpu(kernel: Kernel) -> None:
    # runqueues (a VAR of .data..percpu) at offset BASE+0xF00; __per_cpu_offset = {0x100, 0x200}
    assert _value(kernel, "runqueues:0.id") == 0
    assert _value(kernel, "runqueues:1.id") == 1
    assert evaluate(kernel.prog, "&runqueues:1").value_() == kernel.notes["item1"]
    assert _value(kernel, "runqueues:1.id + runqueues:0.id * 10") == 1
    assert _value(kernel, "&runqueues") == 0xFFFF888000000F00
    with pytest.raises(ExpressionError, match="per-CPU variable: give a CPU"):
        evaluate(kernel.prog, "runqueues.id")
    with pytest.raises(ExpressionError, match="not a per-CPU variable"):
        evaluate(kernel.prog, "init_task:1")
    with pytest.raises(ExpressionError, match="CPU number"):
        evaluate(kernel.prog, "runqueues:x")
    obj = evaluate(kernel.prog, "runqueues", usable=False)
    assert isinstance(obj, SymbolObject) and obj.percpu_ and obj.typed_


def test_globals_of_unknown_type_are_read_through_casts(kernel: Kernel) -> None:
    item2 = kernel.notes["item2"]
    kernel.symbols.table["mystery"] = item2
    with pytest.raises(ExpressionError, match=r"cast it: \(TYPE\)mystery or \*\(TYPE \*\)&mystery"):
        evaluate(kernel.prog, "mystery")
    assert _value(kernel, "(unsigned int)mystery") == 0xC0FFEE01
    assert _value(kernel, "*(unsigned int *)&mystery") == 0xC0FFEE01
    assert _value(kernel, "((struct item *)&mystery)->id") == 2
    assert _value(kernel, "((struct item)mystery).id == 2") == 1
    assert evaluate(kernel.prog, "&mystery").type_.type_name() == "void *"
    for text in ("mystery + 1", "sizeof mystery", "mystery.id", "mystery[0]", "*mystery"):
        with pytest.raises(ExpressionError, match="cast it"):
            evaluate(kernel.prog, text)
    obj = evaluate(kernel.prog, "mystery", usable=False)
    assert isinstance(obj, SymbolObject) and not obj.typed_ and obj.address_ == item2


def test_functions_are_typed_from_btf_func_records(kernel: Kernel) -> None:
    kernel.symbols.table["printk"] = 0xFFFFFFFF81000000
    fn = evaluate(kernel.prog, "printk")
    assert fn.type_.type_name() == "int (const char *, ...)" and fn.address_ == 0xFFFFFFFF81000000
    assert fn.type_.declaration("printk") == "int printk(const char *, ...)"
    assert _value(kernel, "&printk") == 0xFFFFFFFF81000000
    assert _value(kernel, "(unsigned long)printk") == 0xFFFFFFFF81000000


@pytest.mark.parametrize("text", [
    "init_task.pid +", "sizeof", "(int", "1 ? 2 : 3", "runqueues:", "5 / 0", "5 % 0", "1 << 40", "1 << -1",
    "~init_task", "!init_task", "init_task + 1", "init_task.comm.x", "99999999999999999999999",
])
def test_more_bad_expressions(kernel: Kernel, text: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(kernel.prog, text)


def test_character_constants(kernel: Kernel) -> None:
    assert _value(kernel, "init_task.comm[0] == 's' && init_task.comm[1] == 'w'") == 1
    assert [_value(kernel, c) for c in ("'a'", r"'\n'", r"'\x41'", r"'\377'", r"'\''", r"'\0'")] == \
        [97, 10, 65, -1, 39, 0]
    assert evaluate(kernel.prog, "'a' + 1").type_.type_name() == "int"
    with pytest.raises(ExpressionError):
        evaluate(kernel.prog, "'ab'")


def test_deep_nesting_is_refused_not_a_recursion_error(kernel: Kernel) -> None:
    assert _value(kernel, "(" * 150 + "1" + ")" * 150) == 1
    for text in ("(" * 300 + "1" + ")" * 300, "-" * 500 + "1", "*" * 500 + "init_task"):
        with pytest.raises(ExpressionError, match="nested deeper than 200"):
            evaluate(kernel.prog, text)
