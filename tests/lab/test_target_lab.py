"""kcrash.analysis.target on a real dump (BUG on 6.12, kdump and ELF): open_target loads every
module's symbols and split BTF from memory (the lab's test module among them, as lab.json names
it), keeps the decoded kallsyms in the cache directory by build-id, builds the ORC unwinder only
when asked, and the two files of one crash give the same modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.analysis.target import load_modules, module_debuginfo, open_target
from kcrash.helpers.linux.stack import kernel_unwinder

pytestmark = pytest.mark.lab

_UNWINDER_KEY = "kcrash.helpers.linux.stack.kernel_unwinder"


@pytest.fixture(scope="module")
def crash(lab_crash: Callable[..., Path]) -> Path:
    return lab_crash("BUG", "6.12", False)


def test_modules_symbols_and_btf(crash: Path, tmp_path: Path) -> None:
    lab = json.loads((crash / "lab.json").read_text())
    with open_target(crash / "vmcore.kdump", tmp_path) as prog:
        found, truncated = module_debuginfo(prog)
        assert truncated is None
        assert load_modules(prog) is found  # loaded once, at open
        by_name = {m.name: m for m in found}
        test_module = by_name[lab["module"]["name"]]
        assert test_module.error is None and test_module.num_symbols > 10 and test_module.btf_size > 0
        assert all(m.num_symbols > 0 for m in found)
        # the module's symbols and types are now the program's
        assert prog.symbol_address(lab["crash_function"]) >= 0xFFFFFFFFC0000000
        assert prog.type("struct kcrash_test_planted").sizeof() > 0  # a type only the module's BTF has
        # ORC was asked for (the default): the unwinder is built and cached
        assert _UNWINDER_KEY in prog.cache and kernel_unwinder(prog).orc_error is None
    assert list(tmp_path.rglob("*.bin")), "decoded kallsyms were not cached by build-id"


def test_orc_only_when_asked_and_same_modules_from_elf(crash: Path, tmp_path: Path) -> None:
    with open_target(crash / "vmcore.kdump", tmp_path) as prog:
        kdump_modules = sorted((m.name, m.num_symbols, m.btf_size) for m in module_debuginfo(prog)[0])
    with open_target(crash / "vmcore.elf", tmp_path, orc=False) as prog:
        assert _UNWINDER_KEY not in prog.cache
        elf_modules = sorted((m.name, m.num_symbols, m.btf_size) for m in module_debuginfo(prog)[0])
    assert elf_modules == kdump_modules and len(kdump_modules) >= 2
