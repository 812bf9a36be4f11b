"""The DWARF symbolizer on small programs compiled in the test (gcc -O2 -g, DWARF 5), with binutils'
addr2line as the reference where it is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kcrash.debuginfo.elf_symtab import SHF_EXECINSTR
from kcrash.debuginfo.symbolizer import KernelSymbolizer, SourceLocation, Symbolizer, format_location
from kcrash.errors import CorruptDumpError, MissingDebugInfoError, SymbolNotFoundError
from support.addr2line import addr2line, as_addr2line

SAMPLE = r"""
static inline __attribute__((always_inline)) int leaf(int x)
{
	return x * 3 + 1;
}

static inline __attribute__((always_inline)) int middle(int x)
{
	return leaf(x) ^ (x >> 2);
}

__attribute__((noinline)) int outer(volatile int *p)
{
	int r = middle(*p);
	if (*p > 10)
		r += middle(*p + 1);
	return r;
}

__attribute__((noinline)) static int twin(int x)
{
	return x + 1;
}

int use_twin_a(int x) { return twin(x) * 2; }
"""

OTHER = r"""
__attribute__((noinline)) static int twin(int x)
{
	volatile int y = x;
	return y * 7 + x * 5 - 3;
}

int use_twin_b(int x) { return twin(x) + 4; }
int main(void) { volatile int v = 3; extern int outer(volatile int *); return outer(&v); }
"""

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
needs_addr2line = pytest.mark.skipif(shutil.which("addr2line") is None, reason="binutils is not installed")


def build(tmp: Path, *, relocatable: bool = False) -> Path:
    """Compile the sample (an executable, or one relocatable object like a .ko)."""
    (tmp / "sample.c").write_text(SAMPLE)
    (tmp / "other.c").write_text(OTHER)
    out = tmp / ("sample.o" if relocatable else "sample")
    sources = ["sample.c"] if relocatable else ["sample.c", "other.c"]
    flags = ["-c"] if relocatable else ["-Wl,--build-id"]
    subprocess.run(["gcc", "-O2", "-g", "-gdwarf-5", *flags, "-o", out.name, *sources], cwd=tmp, check=True)
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    return build(tmp_path_factory.mktemp("sample"))


@needs_gcc
def test_inline_chain_names_the_inlined_functions(sample: Path) -> None:
    with Symbolizer.open(sample) as sym:
        start = sym.address_of("outer")
        chains = [sym.symbolize(a) for a in range(start, start + sym.symbols.get_symbols_by_name("outer")[0].size)]
    names = {tuple(loc.function for loc in chain) for chain in chains}
    assert ("leaf", "middle", "outer") in names
    deep = next(c for c in chains if len(c) == 3)
    assert [loc.inlined for loc in deep] == [True, True, False]
    assert deep[0].file.endswith("sample.c") and deep[0].line == 4
    assert deep[1].line == 9  # leaf() called from middle()
    assert deep[2].line in (14, 16)  # middle() called from outer()


@needs_gcc
@needs_addr2line
def test_every_code_byte_equals_addr2line(sample: Path) -> None:
    # The C functions of the sample, every byte. The C runtime's startup code (crtstuff.c) has no
    # DWARF; there addr2line takes a file name from STT_FILE symbols, which kcrash does not emulate.
    with Symbolizer.open(sample) as sym:
        addresses = []
        for name in ("outer", "twin", "use_twin_a", "use_twin_b", "main"):
            for found in sym.symbols.get_symbols_by_name(name):
                addresses += range(found.address, found.address + found.size)
        ours = [as_addr2line(sym.symbolize(a)) for a in addresses]
    assert len(addresses) > 100
    assert ours == addr2line(sample, addresses)


@needs_gcc
@needs_addr2line
def test_relocatable_object_sections_equal_addr2line_j(tmp_path: Path) -> None:
    obj = build(tmp_path, relocatable=True)
    with Symbolizer.open(obj, module_base=0xFFFFFFFFC0000000) as sym:
        for section in sym.image.sections:
            if section.sh_flags & SHF_EXECINSTR and section.sh_size:
                base = sym.load_address_of(section)
                offsets = list(range(section.sh_size))
                ours = [as_addr2line(sym.symbolize(base + o)) for o in offsets]
                assert ours == addr2line(obj, offsets, section.name), section.name


@needs_gcc
def test_warm_cache_gives_the_same_answers_without_dwarf(sample: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with Symbolizer.open(sample, cache_dir=tmp_path) as cold:
        start = cold.address_of("outer")
        first = [cold.symbolize(a) for a in range(start, start + 40)]
    assert any((tmp_path / "debuginfo").rglob("cu-*.bin"))

    def no_dwarf(*_: object) -> None:
        raise AssertionError("the warm path parsed DWARF")

    monkeypatch.setattr("kcrash.debuginfo.symbolizer.open_dwarf", no_dwarf)
    with Symbolizer.open(sample, cache_dir=tmp_path) as warm:
        assert [warm.symbolize(a) for a in range(start, start + 40)] == first


@needs_gcc
def test_reloaded_unit_extended_and_stored_again_keeps_its_answers(sample: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A unit reloaded from the cache (typed views of the entry's bytes) gets the scopes of another
    # function of the same unit and is stored again; a third process answers both without DWARF.
    with Symbolizer.open(sample) as serial:
        outer, twin = serial.address_of("outer"), serial.address_of("use_twin_a")
        expected = [serial.symbolize(a) for a in (outer + 4, twin + 1)]
    with Symbolizer.open(sample, cache_dir=tmp_path) as cold:
        assert cold.symbolize(outer + 4) == expected[0]
    with Symbolizer.open(sample, cache_dir=tmp_path) as warm:
        assert warm.aranges.cu_offset_or_none(outer) == warm.aranges.cu_offset_or_none(twin)
        assert warm.symbolize(twin + 1) == expected[1]

    def no_dwarf(*_: object) -> None:
        raise AssertionError("the warm path parsed DWARF")

    monkeypatch.setattr("kcrash.debuginfo.symbolizer.open_dwarf", no_dwarf)
    with Symbolizer.open(sample, cache_dir=tmp_path) as third:
        assert [third.symbolize(a) for a in (outer + 4, twin + 1)] == expected


@needs_gcc
def test_damaged_unit_cache_entries_are_typed_errors(sample: Path, tmp_path: Path) -> None:
    with Symbolizer.open(sample, cache_dir=tmp_path) as cold:
        start = cold.address_of("outer")
        cold.symbolize(start)
    (entry,) = (tmp_path / "debuginfo").rglob("cu-*.bin")
    good = entry.read_bytes()
    for damaged in (b"", good[:len(good) // 2], good[:-1]):
        entry.write_bytes(damaged)
        with Symbolizer.open(sample, cache_dir=tmp_path) as warm, pytest.raises(CorruptDumpError, match="damaged"):
            warm.symbolize(start)


@needs_gcc
def test_prefetch_in_worker_processes_gives_the_serial_answers(sample: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with Symbolizer.open(sample) as serial:
        addresses = [s.address + 1 for name in ("outer", "use_twin_a", "use_twin_b", "main")
                     for s in serial.symbols.get_symbols_by_name(name)]
        expected = [serial.symbolize(a) for a in addresses]
    # prefetch forks only in a single-threaded process; a pytest plugin may keep an idle thread of its
    # own (pytest-rerunfailures did), which is safe to fork around
    monkeypatch.setattr("kcrash.debuginfo.symbolizer.threading.active_count", lambda: 1)
    with Symbolizer.open(sample, cache_dir=tmp_path) as sym:
        units = {sym.aranges.cu_offset_or_none(a) for a in addresses}
        assert len(units) == 2  # sample.c and other.c: two units for two workers
        sym.prefetch(addresses, workers=2)

        def no_build(*_: object) -> None:
            raise AssertionError("a unit was built in-process after prefetch")

        monkeypatch.setattr(sym.reader, "build_cu", no_build)
        monkeypatch.setattr(sym.reader, "walk_function", no_build)
        assert [sym.symbolize(a) for a in addresses] == expected
    assert len(list((tmp_path / "debuginfo").rglob("cu-*.bin"))) == 2


def _die_in_worker(job: object) -> None:
    os._exit(3)  # a worker killed mid-unit (OOM killer, signal)


@needs_gcc
def test_prefetch_falls_back_to_in_process_builds_when_a_worker_dies(sample: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kcrash.debuginfo.symbolizer._build_unit_in_worker", _die_in_worker)
    with Symbolizer.open(sample) as serial:
        addresses = [serial.address_of("outer") + 1, serial.address_of("use_twin_b") + 1]
        expected = [serial.symbolize(a) for a in addresses]
    with Symbolizer.open(sample) as sym:
        sym.prefetch(addresses, workers=2)
        assert [sym.symbolize(a) for a in addresses] == expected


@needs_gcc
def test_duplicate_static_names_are_told_apart_by_size(sample: Path) -> None:
    with Symbolizer.open(sample) as sym:
        twins = sym.symbols.get_symbols_by_name("twin")
        assert len(twins) == 2 and twins[0].size != twins[1].size
        for twin in twins:
            assert sym.address_of("twin", 0, twin.size) == twin.address
        with pytest.raises(SymbolNotFoundError):
            sym.address_of("no_such_function")


@needs_gcc
def test_stripped_file_is_refused_with_one_message(sample: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "stripped"
    subprocess.run(["objcopy", "--strip-debug", str(sample), str(stripped)], check=True)
    with pytest.raises(MissingDebugInfoError, match="stripped"):
        Symbolizer.open(stripped)


@needs_gcc
def test_truncated_dwarf_is_a_typed_error(sample: Path, tmp_path: Path) -> None:
    with Symbolizer.open(sample) as sym:
        info = sym.image.find_section_or_none(".debug_info")
        assert info is not None
        start = sym.address_of("outer")
        offset = info.sh_offset
    damaged = tmp_path / "damaged"
    data = bytearray(sample.read_bytes())
    data[offset + 11:offset + 400] = b"\xff" * 389  # the unit's first DIEs, past the header
    damaged.write_bytes(bytes(data))
    with Symbolizer.open(damaged) as broken, pytest.raises(CorruptDumpError):
        broken.symbolize(start)
    cut = tmp_path / "cut"
    cut.write_bytes(sample.read_bytes()[:offset + 50])
    with pytest.raises(CorruptDumpError):
        Symbolizer.open(cut)


@needs_gcc
def test_kernel_symbolizer_dispatches_modules_by_range(sample: Path, tmp_path: Path) -> None:
    obj = build(tmp_path, relocatable=True)
    base = 0xFFFFFFFFC0100000
    with Symbolizer.open(sample) as top, Symbolizer.open(obj, module_base=base, name="sample") as mod:
        kernel = KernelSymbolizer(top, {"sample": mod}, kaslr_offset=0x1000)
        address = kernel.locate("outer", 5, "sample")
        assert base <= address < base + 0x1000
        assert kernel.symbolize(address) == mod.symbolize(address)
        in_vmlinux = top.address_of("outer", 5)
        assert kernel.symbolize(in_vmlinux + 0x1000) == top.symbolize(in_vmlinux)
        with pytest.raises(MissingDebugInfoError, match="module other"):
            kernel.locate("x", 0, "other")


def test_format_location_strips_the_source_tree() -> None:
    loc = SourceLocation("f", "/build/linux/mm/slub.c", 12)
    assert format_location(loc, "/build/linux") == "mm/slub.c:12"
    assert format_location(loc, "/elsewhere") == "/build/linux/mm/slub.c:12"
    assert format_location(SourceLocation("f", "??", 0)) == "??:0"


def test_inline_chain_of_a_damaged_cache_entry_ends() -> None:
    # Scopes come back from the cache as stored; a parent link that does not point to an earlier
    # scope (here: scope 1 is its own parent, scope 2's parent is out of range) must not loop.
    from kcrash.debuginfo.dwarf_index import Scope
    from kcrash.debuginfo.symbolizer import _chain

    fn = Scope(((0x1000, 0x2000),), -1, 0, "f", 0, 0, 0)
    looped = Scope(((0x1000, 0x1100),), 1, 1, "g", 1, 2, 3)
    stray = Scope(((0x1200, 0x1300),), 99, 1, "h", 1, 2, 3)
    began = time.monotonic()
    assert _chain([fn, looped, stray], 0x1010) == [1]
    assert _chain([fn, looped, stray], 0x1210) == [2]
    assert _chain([fn, Scope(((0x1000, 0x1100),), 0, 1, "g", 1, 2, 3)], 0x1010) == [1, 0]
    assert time.monotonic() - began < 1.0
