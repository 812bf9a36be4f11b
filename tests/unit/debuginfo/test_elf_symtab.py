"""Bulk ELF symbol tables, build-ids, module layout and relocation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf import constants, enums

from kcrash.debuginfo import elf_symtab
from kcrash.debuginfo.elf_symtab import ElfSymbolTable, module_section_bases, open_elf_image, relocated_section
from kcrash.errors import CorruptDumpError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")

SOURCE = """
__attribute__((noinline)) int alpha(int x) { return x * 2; }
__attribute__((noinline)) static int beta(int x) { return alpha(x) + 1; }
int gamma_(int x) { return beta(x) - 3; }
__attribute__((section(".init.text"))) int setup(void) { return gamma_(1); }
"""


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("elf")
    (tmp / "a.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-c", "-o", "a.o", "a.c"], cwd=tmp, check=True)
    subprocess.run(["gcc", "-O2", "-g", "-shared", "-nostdlib", "-Wl,--build-id=0x1234abcd", "-o", "a.so", "a.c"],
                   cwd=tmp, check=True)
    return tmp / "a.o", tmp / "a.so"


def nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (line.split() for line in out.splitlines()) if len(p) == 3 and p[1] in "tT"}


def test_symbols_equal_nm_and_survive_the_cache_format(objects: tuple[Path, Path]) -> None:
    image = open_elf_image(objects[1])
    assert image.build_id_or_none() == "1234abcd"
    table = ElfSymbolTable.from_image(image)
    for name, address in nm(objects[1]).items():
        assert table.address_of(name) == address
    again = ElfSymbolTable.from_bytes(table.to_bytes())
    assert [again.address_of(n) for n in ("alpha", "beta")] == [table.address_of(n) for n in ("alpha", "beta")]
    beta = table.get_symbols_by_name("beta")[0]
    found = table.symbolize_or_none(beta.address + 1)
    assert found is not None and found[0].name == "beta" and found[1] == 1
    nearest = table.nearest_function_or_none(beta.address + beta.size + 100)
    assert nearest is not None


def test_module_layout_puts_text_first_and_init_after_core(objects: tuple[Path, Path]) -> None:
    image = open_elf_image(objects[0])
    bases = module_section_bases(image, 0x1000)
    by_name = {s.name: s for s in image.sections}
    assert bases[by_name[".text"].index] == 0x1000
    assert bases[by_name[".init.text"].index] > max(v for k, v in bases.items() if k != by_name[".init.text"].index)
    table = ElfSymbolTable.from_image(image, bases)
    assert table.address_of("alpha") == 0x1000 + nm(objects[0])["alpha"]


def test_relocation_writes_load_addresses_into_debug_sections(objects: tuple[Path, Path]) -> None:
    image = open_elf_image(objects[0])
    info = image.find_section_or_none(".debug_info")
    assert info is not None
    bases = module_section_bases(image, 0xFFFFFFFFC0000000)
    assert relocated_section(image, info, bases) != bytes(image.section_bytes(info))
    assert (0xFFFFFFFFC0000000).to_bytes(8, "little")[4:] in relocated_section(image, info, bases)


def test_garbage_and_truncated_files_are_typed_errors(tmp_path: Path, objects: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF" + b"\x02\x01" + b"\0" * 58 + b"\xff" * 64)
    with pytest.raises(CorruptDumpError):
        open_elf_image(junk)
    cut = tmp_path / "cut"
    cut.write_bytes(objects[1].read_bytes()[:200])
    with pytest.raises(CorruptDumpError):
        open_elf_image(cut)
    with pytest.raises(CorruptDumpError):
        ElfSymbolTable.from_bytes(b"\x01" * 20)


def test_elf_constants_are_pyelftools() -> None:
    # elf_symtab keeps its own copies (importing elftools.elf.enums costs ~10 ms, see bench/RESULTS.md);
    # every one must be pyelftools' value under pyelftools' name.
    library = {**enums.ENUM_E_TYPE, **enums.ENUM_SH_TYPE_BASE, **enums.ENUM_ST_INFO_TYPE, **enums.ENUM_ST_INFO_BIND,
               **enums.ENUM_NOTE_N_TYPE, **enums.ENUM_RELOC_TYPE_x64, **enums.ENUM_E_MACHINE,
               **{k: v for k, v in vars(constants.SH_FLAGS).items() if k.startswith("SHF_")},
               **{k: v for k, v in vars(constants.SHN_INDICES).items() if k.startswith("SHN_")}}
    ours = {k: v for k, v in vars(elf_symtab).items() if k.isupper() and k.split("_")[0] in
            ("ET", "SHT", "SHF", "SHN", "STT", "STB", "NT", "R", "EM")}
    assert len(ours) >= 17
    assert {k: library.get(k) for k in ours} == ours


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc-12") is None,
                    reason="gcc-12-aarch64-linux-gnu is not installed")
def test_aarch64_mapping_symbols_name_no_function(tmp_path: Path) -> None:
    # An arm64 object has $x/$d mapping symbols at code and data starts (nm shows them); kallsyms and
    # mksysmap drop them, so a frame must be named after its function, never "$x".
    (tmp_path / "m.c").write_text("int table[4] = {1, 2, 3, 4};\n"
                                  "int first(int a) { return table[a & 3] + 1; }\n"
                                  "int second(int a) { return first(a) * 3; }\n")
    subprocess.run(["aarch64-linux-gnu-gcc-12", "-O2", "-c", "-o", "m.o", "m.c"], cwd=tmp_path, check=True)
    assert any(name.startswith("$") for name in nm(tmp_path / "m.o"))
    image = open_elf_image(tmp_path / "m.o")
    try:
        table = ElfSymbolTable.from_image(image)
        names = {table.symbolize_or_none(addr)[0].name for addr in range(0, 0x40, 4)
                 if table.symbolize_or_none(addr) is not None}
    finally:
        image.close()
    assert names and not any(name.startswith("$") for name in names)
    assert {"first", "second"} <= names
