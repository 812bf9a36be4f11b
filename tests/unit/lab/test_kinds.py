"""The crash-kind table against the guest sources that implement it."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from kcrash.errors import LabError
from kcrash.lab.kinds import KINDS, get_kind, kind_for_arch, supported_kinds, unsupported_on_arch


def _module_kinds() -> set[str]:
    source = (resources.files("kcrash.lab") / "kmod" / "kcrash_test.c").read_text()
    return set(re.findall(r'\{ "([A-Z_]+)", kcrash_test_do_\w+ \}', source))


def test_lookup_is_case_insensitive() -> None:
    assert get_kind("sysrq") is KINDS["SYSRQ"]
    assert get_kind("hung-abba") is KINDS["HUNG_ABBA"]


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(LabError, match="known kinds: BUG"):
        get_kind("meltdown")


def test_every_module_kind_is_implemented_by_the_module() -> None:
    module_kinds = {k.name for k in KINDS.values() if k.trigger == "module"}
    assert module_kinds == _module_kinds()


def test_module_crash_functions_exist_in_the_module_source() -> None:
    source = (resources.files("kcrash.lab") / "kmod" / "kcrash_test.c").read_text()
    for kind in KINDS.values():
        if kind.trigger == "module" and kind.crash_function.startswith("kcrash_test"):
            assert re.search(rf"\b{kind.crash_function}\(", source), kind.name


def test_the_issue_list_of_kinds_is_covered() -> None:
    wanted = {"BUG", "NULL_READ", "NULL_WRITE", "WARNING", "PANIC", "DIVZERO", "STACK_OVERFLOW",
              "SOFTLOCKUP", "HUNG_ABBA", "SYSRQ", "INITEXIT", "OOM", "NMI"}
    assert wanted <= set(KINDS)


def test_without_the_test_module_only_module_free_kinds_remain() -> None:
    assert set(supported_kinds(False)) == {"SYSRQ", "INITEXIT", "OOM", "NMI"}
    assert supported_kinds(True) == tuple(KINDS)


def test_arm64_kind_facts() -> None:
    assert kind_for_arch(get_kind("STACK_OVERFLOW"), "arm64").panic_message == "kernel stack overflow"
    assert kind_for_arch(get_kind("STACK_OVERFLOW"), "x86_64") is get_kind("STACK_OVERFLOW")
    assert unsupported_on_arch(get_kind("DIVZERO"), "arm64") and unsupported_on_arch(get_kind("NMI"), "arm64")
    assert unsupported_on_arch(get_kind("DIVZERO"), "x86_64") is None
