"""kallsyms recognised in the kernel image by structure (issue #15), on real dumps whose VMCOREINFO has
the kallsyms lines so that the answer is known: with those lines removed, the tables found must decode
to exactly the symbols (names, addresses, kinds) the lines give — 6.1 (offsets before the names) and
6.12 (names first, offsets after the token index), with and without KASLR, ELF and kdump."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.kallsyms_finder import find_kallsyms_candidates
from kcrash.dumps import open_dump
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.memory import open_kernel_memory

pytestmark = pytest.mark.lab

CASES = [("6.1", False, "vmcore.elf"), ("6.12", False, "vmcore.kdump"), ("6.12", True, "vmcore.kcrash")]


@pytest.mark.parametrize(("kernel", "kaslr", "name"), CASES)
def test_tables_found_by_structure_equal_vmcoreinfo_s(lab_crash: Callable[..., Path], kernel: str, kaslr: bool,
                                                      name: str) -> None:
    dump = open_dump(lab_crash("SYSRQ" if not kaslr else "BUG", kernel, kaslr) / name)
    mem, info = open_kernel_memory(dump), dump.vmcoreinfo_or_none()
    assert info is not None and info.get_symbol_or_none("kallsyms_names") is not None
    stripped = parse_vmcoreinfo("\n".join(line for line in info.text.splitlines() if "kallsyms" not in line))
    assert stripped.get_symbol_or_none("kallsyms_names") is None
    known = {k: v for k, v in info.symbols.items() if k.startswith("kallsyms_")}
    candidates = list(find_kallsyms_candidates(mem, info.get_symbol("_stext")))
    assert any(all(c.get(k) == v for k, v in known.items()) for c in candidates)
    want, got = load_kallsyms(mem, info), load_kallsyms(mem, stripped)
    assert got.num_symbols() == want.num_symbols() > 50_000
    assert np.array_equal(got.kernel_addresses(), want.kernel_addresses())
    assert [(s.name, s.kind) for s in got.iter_symbols()] == [(s.name, s.kind) for s in want.iter_symbols()]
    dump.close()
