"""Kernel symbols from a System.map or a vmlinux the user gives: moved by the dump's KASLR offset, checked
against VMCOREINFO (and the build-id), refused with one reason when they do not belong to the dump."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kcrash.debuginfo.symbol_files import _columns, find_symbol_file_or_none, load_symbol_file
from kcrash.dumps.base import DumpWarning
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.errors import DebugInfoMismatchError, MissingDebugInfoError

LINK = 0xFFFFFFFF81000000
OFFSET = 0x1E00000


def _map(tmp: Path, stext: int = LINK, extra: int = 2000) -> Path:
    lines = [f"{stext:016x} T _stext", f"{LINK + 0x1000:016x} D init_uts_ns", "0000000000000000 D __per_cpu_start",
             "000000000001b000 D runqueues"]
    lines += [f"{LINK + 0x10 * i + 0x2000:016x} t func_{i}" for i in range(extra)]
    path = tmp / "System.map"
    path.write_text("\n".join(lines) + "\n")
    return path


def _info(offset: int = OFFSET) -> object:
    return parse_vmcoreinfo(f"OSRELEASE=6.1.0-test\nKERNELOFFSET={offset:x}\nSYMBOL(_stext)={LINK + offset:x}\n"
                            f"SYMBOL(init_uts_ns)={LINK + 0x1000 + offset:x}\n"
                            "SYMBOL(mem_section)=ffff888003a00000\n")


def test_system_map_symbols_move_by_the_kaslr_offset(tmp_path: Path) -> None:
    table = load_symbol_file(_map(tmp_path), _info())  # type: ignore[arg-type]
    assert table.address_of("_stext") == LINK + OFFSET
    assert table.address_of("func_7") == LINK + 0x2070 + OFFSET
    assert table.address_of("runqueues") == 0x1B000  # per-CPU symbols are not moved
    symbol, offset = table.symbolize(LINK + OFFSET + 0x2075)
    assert (symbol.name, offset) == ("func_7", 5)


def test_a_map_of_another_build_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingDebugInfoError, match="does not match the dump: _stext"):
        load_symbol_file(_map(tmp_path, stext=LINK + 0x40), _info())  # type: ignore[arg-type]
    table = load_symbol_file(_map(tmp_path, stext=LINK + 0x40), _info(), force=True)  # type: ignore[arg-type]
    assert table.address_of("_stext") == LINK + 0x40 + OFFSET


def test_a_stub_map_is_refused_with_the_reason(tmp_path: Path) -> None:
    stub = tmp_path / "System.map-stub"
    stub.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    with pytest.raises(MissingDebugInfoError, match=r"1 symbol.*stub System\.map"):
        load_symbol_file(stub, _info())  # type: ignore[arg-type]


def test_nothing_to_check_against_is_refused(tmp_path: Path) -> None:
    info = parse_vmcoreinfo("OSRELEASE=6.1.0-test\nSYMBOL(mem_section)=ffff888003a00000\n")
    with pytest.raises(MissingDebugInfoError, match="cannot be checked"):
        load_symbol_file(_map(tmp_path), info)


def test_garbage_is_not_a_symbol_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01garbage\n" * 100)
    with pytest.raises(MissingDebugInfoError, match=r"neither an ELF file nor a System\.map"):
        load_symbol_file(junk, _info())  # type: ignore[arg-type]


def test_found_in_the_usual_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_symbol_file_or_none("6.1.0-test", root=tmp_path) is None
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "System.map-6.1.0-test").write_text("x")
    assert find_symbol_file_or_none("6.1.0-test", root=tmp_path) == tmp_path / "boot" / "System.map-6.1.0-test"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vmlinux-6.1.0-test").write_text("x")
    monkeypatch.setenv("KCRASH_DEBUGINFO_PATH", str(mine))
    assert find_symbol_file_or_none("6.1.0-test", root=tmp_path) == mine / "vmlinux-6.1.0-test"


def test_found_by_build_id(tmp_path: Path) -> None:
    where = tmp_path / "usr/lib/debug/.build-id/ab"
    where.mkdir(parents=True)
    (where / "cdef.debug").write_text("x")
    assert find_symbol_file_or_none(None, "ABcdef", root=tmp_path) == where / "cdef.debug"
    assert find_symbol_file_or_none(None, "ffff", root=tmp_path) is None


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_a_vmlinux_of_another_release_is_refused_by_its_banner(tmp_path: Path) -> None:
    # no BUILD-ID in this VMCOREINFO (kernels before 5.9): the vmlinux's linux_banner names the release
    banner = "Linux version 6.1.0-other (builder@host) (gcc) #1 SMP Debian 6.1.1-1 (2023-01-01)"
    (tmp_path / "v.c").write_text(f'const char linux_banner[] = "{banner}\\n";\nint _stext(void) {{ return 0; }}\n')
    subprocess.run(["gcc", "-c", "-o", "vmlinux", "v.c"], cwd=tmp_path, check=True)
    with pytest.raises(DebugInfoMismatchError, match=r"6\.1\.0-other .*the kernel is 6\.1\.0-test.*--force"):
        load_symbol_file(tmp_path / "vmlinux", _info())  # type: ignore[arg-type]
    with pytest.warns(DumpWarning, match="another kernel build"), \
            pytest.raises(MissingDebugInfoError, match="symbol"):  # forced past the build, then too few symbols
        load_symbol_file(tmp_path / "vmlinux", _info(), force=True)  # type: ignore[arg-type]


def test_arm64_image_symbols_move_and_are_checked(tmp_path: Path) -> None:
    # arm64: the image starts at KIMAGE_VADDR (= MODULES_END), below x86's __START_KERNEL_map; per-CPU
    # symbols lie in the image and move with it
    kimage = 0xFFFF800080000000
    lines = [f"{kimage + 0x10000:016x} T _stext", f"{kimage + 0x2000000:016x} D init_task",
             f"{kimage + 0x1800000:016x} D runqueues"]
    lines += [f"{kimage + 0x20000 + 0x10 * i:016x} t func_{i}" for i in range(2000)]
    path = tmp_path / "System.map"
    path.write_text("\n".join(lines) + "\n")
    info = parse_vmcoreinfo(f"KERNELOFFSET={OFFSET:x}\nSYMBOL(_stext)={kimage + 0x10000 + OFFSET:x}\n")
    table = load_symbol_file(path, info, image_start=kimage)
    assert table.address_of("runqueues") == kimage + 0x1800000 + OFFSET
    assert table.address_of("init_task") == kimage + 0x2000000 + OFFSET
    with pytest.raises(MissingDebugInfoError, match="none of the dump's VMCOREINFO symbols"):
        load_symbol_file(path, info)  # with x86-64's image start nothing is moved, nothing checked


def test_arm64_mapping_symbols_are_left_out_of_a_vmlinux_table() -> None:
    # $x/$d (AArch64 mapping symbols) sit at function starts in a vmlinux's .symtab; kallsyms drops them
    strtab = b"\0$x\0start_kernel\0$d\0jiffies\0"
    sym = np.dtype([("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
                    ("st_value", "<u8"), ("st_size", "<u8")])
    syms = np.array([(1, 0, 0, 1, 0x1000, 0), (4, 0x12, 0, 1, 0x1000, 64), (17, 0, 0, 2, 0x2000, 0),
                     (20, 0x11, 0, 2, 0x2000, 8)], dtype=sym)
    names, addresses, kinds = _columns(syms, strtab, np.array([ord("A"), ord("T"), ord("D"), ord("A")], np.uint8))
    assert (names, addresses, kinds) == (["start_kernel", "jiffies"], [0x1000, 0x2000], ["T", "D"])
