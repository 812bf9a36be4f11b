"""kcrash.analysis.target on synthetic inputs: the module walk behind load_modules/module_debuginfo
(an empty list; a list head pointing at memory the dump lacks, kept as the reason instead of
raised; one walk per program), and open_target's typed error on a dump whose kernel has no BTF.
The success path (modules, BTF, ORC of a real kernel) is tests/lab/test_target_lab.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.analysis import target
from kcrash.analysis.target import load_modules, module_debuginfo, open_target
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import MissingDebugInfoError
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.kallsyms_dump import write_kallsyms_dumps
from support.synthetic_memory import SyntheticMemory

MODULES = 0xFFFFFFFF82000000  # the `modules` list head


def _program(first: int) -> Program:
    # struct list_head {next, prev}; struct module {list, name[56]}; modules.next = first
    w = BtfWriter()
    c = w.add_int("char", 1, signed=True, char=True)
    i = w.add_int("int", 4, signed=True)
    lp = w.add_ptr(w.next_id + 1)
    lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
    w.add_struct("module", 72, [("list", lh, 0, 0), ("name", w.add_array(c, 56, i), 128, 0)])
    mem = SyntheticMemory({MODULES: 0x1000})
    mem.u64(MODULES, first)
    mem.u64(MODULES + 8, MODULES)
    return Program(MemoryReader(mem.segments()), SymbolTable(["modules"], [MODULES], "D"), parse_btf(w.to_bytes()))


def test_no_modules_loaded() -> None:
    prog = _program(MODULES)  # an empty list points at itself
    assert load_modules(prog) == ()
    assert module_debuginfo(prog) == ((), None)


def test_unreadable_list_is_a_reason_not_an_exception() -> None:
    prog = _program(0xDEAD000000000100)  # LIST_POISON1-like: not in the dump
    found, why = module_debuginfo(prog)
    assert found == ()
    assert why is not None and "cannot read virtual address 0xdead0000000001" in why


def test_the_walk_runs_once_per_program(monkeypatch: pytest.MonkeyPatch) -> None:
    walks = []
    real = target.for_each_module

    def counting(prog: Program) -> object:
        walks.append(prog)
        return real(prog)

    monkeypatch.setattr(target, "for_each_module", counting)
    prog = _program(MODULES)
    assert load_modules(prog) is load_modules(prog)
    module_debuginfo(prog)
    assert len(walks) == 1
    load_modules(_program(MODULES))
    assert len(walks) == 2


def test_open_target_without_btf_is_a_typed_error(tmp_path: Path) -> None:
    # kallsyms but no BTF in the synthetic kernel: types cannot be had without a vmlinux
    dumps = write_kallsyms_dumps(tmp_path)
    with pytest.raises(MissingDebugInfoError, match="BTF"):
        open_target(dumps["kallsyms"], tmp_path / "cache")
