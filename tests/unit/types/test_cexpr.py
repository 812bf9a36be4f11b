"""The C expression evaluator behind ``kcrash p``."""

from __future__ import annotations

import pytest

from conftest import Kernel
from kcrash.errors import ExpressionError, FaultError
from kcrash.types.cexpr import evaluate


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
    "", "init_task.", "init_task->pid", "(struct item *", "init_task[", "no_such_thing", "1 + 2",
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
