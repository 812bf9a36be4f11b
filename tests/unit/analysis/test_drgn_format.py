"""drgn's object text on a synthetic task kernel: members with their types, drgn's integer type
names, a top-level pointer dereferenced with its symbol, char arrays as strings, trailing zero
elements left out, bools as numbers, format_ options, and kcrash's own format outside the shell."""

from __future__ import annotations

from kcrash.analysis.drgn_compat import drgn_program
from kcrash.analysis.drgn_format import drgn_format, drgn_type_name
from kcrash.types.model import array_type, int_type
from kcrash.types.object import Object
from support.task_kernel import INIT_TASK, Kernel


def _task() -> tuple[Kernel, int]:
    k = Kernel()
    init = k.task(1, 1, b"init\xff")
    k.ring(INIT_TASK + 32, [init + 32])
    return k, init


def test_struct_members_carry_their_types() -> None:
    k, init = _task()
    text = drgn_format(k.obj(init)[0])
    lines = text.splitlines()
    assert lines[0] == "(struct task_struct){" and lines[-1] == "}"
    assert "\t.pid = (int)1," in lines and '\t.comm = (char [16])"init\\xff",' in lines
    assert f"\t\t.next = (struct list_head *)init_task+0x20 = {INIT_TASK + 32:#x}," in lines


def test_a_pointer_is_dereferenced_with_its_symbol() -> None:
    k, _ = _task()
    head = k.prog["init_task"].tasks.address_of_()
    text = drgn_format(head)
    assert text.startswith(f"*(struct list_head *)(init_task+0x20 = {INIT_TASK + 32:#x}) = {{\n")
    assert drgn_format(head, dereference=False) == f"(struct list_head *)init_task+0x20 = {INIT_TASK + 32:#x}"
    assert drgn_format(head, dereference=False, symbolize=False) == f"(struct list_head *){INIT_TASK + 32:#x}"
    unreadable = Object(k.prog, k.prog.pointer_type("struct list_head"), 0x10)
    assert drgn_format(unreadable) == "(struct list_head *)0x10"


def test_type_names_arrays_and_bools_as_drgn() -> None:
    k, _ = _task()
    assert drgn_type_name(int_type("long unsigned int", 8, False)) == "unsigned long"
    assert drgn_type_name(array_type(int_type("long int", 8, True), 0)) == "long []"
    ints = array_type(k.prog.type("int"), 4)
    assert drgn_format(Object(k.prog, ints, bytes([1, 0, 0, 0, 2, 0, 0, 0] + [0] * 8))) == "(int [4]){ 1, 2 }"
    assert drgn_format(Object(k.prog, ints, bytes(16))) == "(int [4]){}"
    assert drgn_format(Object(k.prog, k.prog.type("_Bool"), 1)) == "(_Bool)1"
    assert drgn_format(Object(k.prog, k.prog.type("int"), 5), type_name=False) == "5"


def test_str_is_drgns_only_in_the_drgn_program() -> None:
    k, init = _task()
    task = k.obj(init)
    plain = str(task.tasks)
    assert ".next = 0x" in plain  # kcrash's own format (p, struct, ...)
    drgn_program(k.prog)
    assert ".next = (struct list_head *)" in str(task.tasks) and task.tasks.format_() == str(task.tasks)
