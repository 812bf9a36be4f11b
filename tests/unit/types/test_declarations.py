"""The declaration parser, C type names, and the shipped kernel declaration table."""

from __future__ import annotations

import pytest

from conftest import Kernel
from kcrash.errors import TypeLookupError
from kcrash.types.declarations import (
    KERNEL_DECLARATIONS,
    canonical_base_name,
    parse_declarations,
    parse_type_spec,
)
from kcrash.types.model import Qualifiers


@pytest.mark.parametrize(("words", "name"), [
    ("unsigned long", "long unsigned int"), ("long unsigned int", "long unsigned int"), ("long", "long int"),
    ("unsigned", "unsigned int"), ("signed", "int"), ("long long", "long long int"),
    ("unsigned long long", "long long unsigned int"), ("short", "short int"), ("unsigned short", "short unsigned int"),
    ("char", "char"), ("unsigned char", "unsigned char"), ("signed char", "signed char"),
])
def test_integer_spellings_become_gcc_names(words: str, name: str) -> None:
    assert canonical_base_name(words.split()) == name


def test_type_specs() -> None:
    spec = parse_type_spec("const struct list_head * const *")
    assert (spec.keyword, spec.name, spec.qualifiers) == ("struct", "list_head", Qualifiers.CONST)
    assert spec.steps == (("*", Qualifiers.CONST), ("*", Qualifiers.NONE))
    assert parse_type_spec("char [16]").steps == (("[16]", Qualifiers.NONE),)
    assert parse_type_spec("u64").name == "u64"
    assert str(parse_type_spec("struct task_struct *")) == "struct task_struct *"
    for bad in ("", "struct", "struct *", "int [x]", "unsigned foo", "int a b"):
        with pytest.raises(TypeLookupError):
            parse_type_spec(bad)


def test_declarations_parse() -> None:
    decls = parse_declarations("""
        /* comment */ struct task_struct init_task;  // trailing
        unsigned long __per_cpu_offset[];
        int *grid[4][2];
        volatile unsigned long jiffies;
    """)
    assert str(decls["init_task"]) == "struct task_struct"
    assert decls["__per_cpu_offset"].steps == (("[]", Qualifiers.NONE),)
    assert decls["grid"].steps == (("*", Qualifiers.NONE), ("[2]", Qualifiers.NONE), ("[4]", Qualifiers.NONE))
    assert decls["jiffies"].qualifiers == Qualifiers.VOLATILE
    with pytest.raises(TypeLookupError):
        parse_declarations("struct task_struct;")


def test_array_of_pointers_resolves_inside_out(kernel: Kernel) -> None:
    kernel.prog.declare("grid", "int *[4][2]")
    t = parse_declarations("int *grid[4][2];")["grid"].resolve(kernel.prog._lookup)
    assert t.type_name() == "int *[4][2]"
    assert t.sizeof() == 64 and t.length == 4 and t.type.length == 2


def test_shipped_table_names_what_helpers_need() -> None:
    decls = parse_declarations(KERNEL_DECLARATIONS)
    for name in ("init_task", "modules", "prb", "runqueues", "jiffies", "jiffies_64", "__per_cpu_offset",
                 "nr_cpu_ids", "__cpu_online_mask", "init_uts_ns", "tainted_mask", "panic_cpu", "current_task",
                 "pcpu_hot", "hardirq_stack_ptr", "cpu_number", "log_buf", "log_buf_len"):
        assert name in decls, name
    assert str(decls["prb"]) == "struct printk_ringbuffer *"
    assert str(decls["linux_banner"]) == "const char []"
