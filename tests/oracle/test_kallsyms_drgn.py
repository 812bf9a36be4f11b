"""Oracle: kcrash's kallsyms (no vmlinux) against drgn given the Debian -dbg vmlinux and the module .ko.

kcrash follows the kernel's kallsyms semantics; drgn uses the ELF symbol table, which has sizes. Where
they legitimately differ, each difference is normalized by one of these documented rules and checked
(never just skipped):

* **alias** — several symbols share the address (``startup_64``/``_stext``/``_text``,
  ``__kprobes_text_end``/``__kprobes_text_start``, ``__pfx_*`` pairs). kcrash takes the first in
  kallsyms table order, which is what the kernel's ``%pS`` prints (``get_symbol_pos`` walks back to the
  first alias; ``scripts/kallsyms`` orders aliases: non-weak first, then fewer leading underscores,
  then nm order); drgn picks by ELF binding/size. Check: same address, and drgn's name is one of
  kcrash's aliases at that address.
* **nested** — kallsyms keeps assembler labels inside a function (``native_irq_return_ldt`` inside
  ``common_interrupt_return``, ``swap_pages`` inside ``relocate_range``); without sizes the kernel
  reports the nearest label below the address, drgn the sized symbol containing it. Check: drgn's
  symbol strictly contains kcrash's symbol start, and drgn knows kcrash's symbol at the same address.
* **gap** — the address is past the ELF ``st_size`` of the symbol below it (alignment padding, or the
  1–2 MiB unsymbolized holes around the ``srso_alias_*`` thunks); drgn finds nothing, while the kernel
  (and kcrash) report the preceding symbol with an offset beyond its ELF size. Check: drgn knows
  kcrash's symbol at the same address, and the address is at or after that symbol's ELF end.
"""

from __future__ import annotations

import collections
import contextlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.debuginfo.kallsyms import _marker_tables, _Reader, _Where, decode_kallsyms, load_kallsyms
from kcrash.debuginfo.kallsyms_names import walk_names, walk_names_by_markers
from kcrash.debuginfo.modules import module_symbols
from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.dumps import open_dump
from kcrash.memory import open_kernel_memory

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

# (kernel, KASLR, dump file): both kernels, KASLR on and off, ELF and kdump-compressed
CASES = [("6.1", True, "vmcore.elf"), ("6.12", False, "vmcore.elf"), ("6.12", True, "vmcore.kdump")]
SAMPLES = 10_000


def _drgn(dump: Path, vmlinux: Path, ko: Path) -> Any:
    if dump.name.endswith(".kdump"):
        prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                          drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    else:
        prog = drgn.Program()
    prog.set_core_dump(str(dump))
    with contextlib.suppress(drgn.MissingDebugInfoError):
        prog.load_debug_info([str(vmlinux), str(ko)])
    return prog


def _kcrash(dump: Path, cache: Path) -> tuple[SymbolTable, dict[str, float]]:
    times = {}
    for label in ("cold", "warm"):
        mem = open_kernel_memory(open_dump(dump))
        start = time.perf_counter()
        table = load_kallsyms(mem, mem.vmcoreinfo, cache)
        times[label] = time.perf_counter() - start
    return table, times


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{'kaslr' if c[1] else 'nokaslr'}-{c[2]}")
def pair(request: pytest.FixtureRequest, lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[SymbolTable, Any, Path, dict[str, float]]:
    kernel, kaslr, name = request.param
    out = lab_crash("BUG", kernel, kaslr)
    info = json.loads((out / "lab.json").read_text())
    table, times = _kcrash(out / name, tmp_path_factory.mktemp("cache"))
    prog = _drgn(out / name, lab_vmlinux_dbg(kernel), Path(info["module"]["path"]))
    return table, prog, out, times


def test_second_open_reads_the_cache(pair: tuple[SymbolTable, Any, Path, dict[str, float]], tmp_path: Path) -> None:
    # (timings are printed for the record; speed targets live in bench/, not in tests)
    table, _, out, times = pair
    print(f"\n{out.name}: {table.num_symbols()} symbols, cold {times['cold']:.3f}s, warm {times['warm']:.3f}s")
    assert table.num_symbols() > 90_000
    decoded = []
    for _ in range(2):
        mem = open_kernel_memory(open_dump(out / "vmcore.elf"))
        decoded.append(decode_kallsyms(mem, mem.vmcoreinfo, tmp_path))
    cold, warm = decoded
    assert not cold.from_cache and warm.from_cache
    assert warm.names == cold.names and warm.kinds == cold.kinds
    assert (warm.addresses == cold.addresses).all()


def test_encodings_were_validated(pair: tuple[SymbolTable, Any, Path, dict[str, float]]) -> None:
    _, _, out, _ = pair
    dump = out / "vmcore.elf"
    mem = open_kernel_memory(open_dump(dump))
    tables = decode_kallsyms(mem, mem.vmcoreinfo)
    # Debian's x86-64 kernels: CONFIG_KALLSYMS_ABSOLUTE_PERCPU=y
    assert tables.address_encoding == "absolute-percpu"
    # a compressed name has at most as many tokens as characters: with every name under 128
    # characters no length needs the big-symbol second byte, so both readings agree ("1-byte")
    if max(map(len, tables.names)) < 128:
        assert tables.length_encoding == "1-byte"


def test_name_prefixes_come_from_the_markers(pair: tuple[SymbolTable, Any, Path, dict[str, float]]) -> None:
    # Exactly one place between the names and the next table holds kallsyms_markers, and walking
    # from them finds the prefixes the byte-by-byte walk finds (both kernels: with and without
    # kallsyms_seqs_of_names between the markers and the token table).
    mem = open_kernel_memory(open_dump(pair[2] / "vmcore.elf"))
    where = _Where.from_vmcoreinfo(mem.vmcoreinfo)
    reader = _Reader(mem)
    num = reader.u32(where.num_syms, "kallsyms_num_syms")
    data = reader.names(where, num)
    walked = walk_names(data, num, big=True)
    assert walked is not None
    found = [w for w in (walk_names_by_markers(data, t, num, big=True, limit=at)
                         for t, at in _marker_tables(data, where, num)) if w is not None]
    assert len(found) == 1
    assert found[0][0].tolist() == walked[0] and found[0][1:] == walked[1:]


def _classify(table: SymbolTable, prog: Any, address: int) -> tuple[str, str]:
    ours = table.symbolize(address)[0]
    try:
        theirs = prog.symbol(address)
    except LookupError:
        theirs = None
    detail = f"{address:#x}: kcrash {table.format_address(address)}, drgn {theirs}"
    if theirs is not None and (theirs.name, theirs.address) == (ours.name, ours.address):
        return "exact", detail
    if theirs is not None and theirs.address == ours.address:
        ok = theirs.name in {s.name for s in table.get_aliases(ours)}
        return ("alias" if ok else "bad alias"), detail
    elf = [s for s in prog.symbols(ours.name) if s.address == ours.address]
    if theirs is not None and theirs.address < ours.address < theirs.address + theirs.size and elf:
        return "nested", detail
    if theirs is None and elf and address >= elf[0].address + max(s.size for s in elf):
        return "gap", detail
    return "unexplained", detail


def test_address_lookup_agrees_with_drgn(pair: tuple[SymbolTable, Any, Path, dict[str, float]]) -> None:
    table, prog, _, _ = pair
    stext, etext = table.address_of("_stext"), table.address_of("_etext")
    assert prog.symbol("_etext").address == etext and prog.symbol("_stext").address == stext
    rng = random.Random(2024)
    counts: collections.Counter[str] = collections.Counter()
    bad: list[str] = []
    for _ in range(SAMPLES):
        kind, detail = _classify(table, prog, rng.randrange(stext, etext))
        counts[kind] += 1
        if kind in ("unexplained", "bad alias"):
            bad.append(detail)
    print(f"\n{dict(counts)}")
    assert not bad, "\n".join(bad[:20])
    assert counts["exact"] + counts["alias"] >= 0.8 * SAMPLES


def test_name_lookup_agrees_with_drgn(pair: tuple[SymbolTable, Any, Path, dict[str, float]]) -> None:
    table, prog, _, _ = pair
    symbols = list(table.iter_symbols())
    rng = random.Random(7)
    checked = 0
    for symbol in rng.sample(symbols, 3000):
        found = table.get_symbol_by_name(symbol.name)
        # duplicated static names: kcrash takes the lowest address (kallsyms_lookup_name); drgn must
        # know that one too. Per-CPU symbols ("A", absolute-percpu) are offsets in both tools.
        assert found.address in {s.address for s in prog.symbols(symbol.name)}, symbol
        checked += 1 if found.address == symbol.address else 0
    assert checked > 2500
    assert table.get_symbol_by_name("runqueues").address == prog.symbol("runqueues").address < 1 << 32


def _module_layout(mod: Any) -> tuple[int, int, list[tuple[int, int]]]:
    # Linux 6.4 (commit ac3b43283923) split module_layout into mod->mem[MOD_TEXT, ...]
    try:
        return int(mod.core_layout.base), int(mod.core_layout.size), []
    except AttributeError:
        regions = [(int(m.base), int(m.size)) for m in mod.mem if int(m.size)]
        return regions[0][0], regions[0][1], regions[1:]


def test_module_symbols_agree_with_drgn(pair: tuple[SymbolTable, Any, Path, dict[str, float]]) -> None:
    from drgn.helpers.linux.module import find_module

    table, prog, out, _ = pair
    info = json.loads((out / "lab.json").read_text())
    mod = find_module(prog, info["module"]["name"])
    kallsyms = mod.kallsyms
    mem = open_kernel_memory(open_dump(out / "vmcore.elf"))
    syms = module_symbols(mem, int(kallsyms.symtab), int(kallsyms.num_symtab), int(kallsyms.strtab),
                          info["module"]["name"], typetab=int(kallsyms.typetab))
    base, size, regions = _module_layout(mod)
    table.add_module(info["module"]["name"], base, size, syms, ranges=regions)
    crash_fn = info["crash_function"]
    ours = table.get_symbol_by_name(crash_fn)
    theirs = prog.symbol(crash_fn)
    assert (ours.address, ours.module) == (theirs.address, "kcrash_test")
    assert ours.size >= theirs.size  # kernel-style size runs to the next symbol
    assert table.format_address(theirs.address + 3) == f"{crash_fn}+0x3/{ours.size:#x} [kcrash_test]"
    functions = [s for s in syms if s.kind in "tT"]
    assert len(functions) > 15
    for s in functions:
        assert s.address in {d.address for d in prog.symbols(s.name)}, s
        # aliases (cleanup_module = kcrash_test_exit): the first in symtab order wins, as in the
        # kernel's find_kallsyms_symbol(); s must be among them
        assert s.name in _names_at(table, prog.symbol(s.name).address + 1)
    assert table.address_of(info["planted"]["global"]) == info["planted"]["global_address"]


def _names_at(table: SymbolTable, address: int) -> set[str]:
    found: Symbol = table.symbolize(address)[0]
    assert found.module == "kcrash_test"
    return {s.name for s in table.get_aliases(found)}
