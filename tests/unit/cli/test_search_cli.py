"""CLI: kcrash search on a synthetic dump (kernel virtual, physical, masks, strings, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from support.synthetic import make_synthetic_kernel

VMALLOC = 0xFFFFC90000000000
PAGE_OFFSET = 0xFFFF888000000000
VALUE = 0xFEEDFACE0BADC0DE
STEXT, TEXT_PHYS, TEXT_SIZE = 0xFFFFFFFF81000000 + 0x1E00000, 0x200000, 4 << 20  # make_synthetic_kernel's


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    k = make_synthetic_kernel()
    phys = k.mappings[VMALLOC + 2 * 4096]
    k.image.write(phys + 0x40, VALUE.to_bytes(8, "little"))
    k.image.write(phys + 0x80, b"planted-string")
    path = tmp_path_factory.mktemp("search") / "vmcore.elf"
    k.write_elf(path)
    return path, phys


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_kernel_search_finds_the_vmalloc_and_direct_map_aliases(dump: tuple[Path, int],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, phys = dump
    code, out, err = _run(capsys, "search", path, f"{VALUE:#x}")
    assert code == 0, err
    aliases = [PAGE_OFFSET + phys, VMALLOC + 2 * 4096]
    if TEXT_PHYS <= phys < TEXT_PHYS + TEXT_SIZE:  # the page may also lie in the kernel image mapping
        aliases.append(STEXT + phys - TEXT_PHYS)
    assert out.splitlines() == [f"{a + 0x40:x}: {VALUE:016x}" for a in sorted(aliases)]


def test_physical_masked_json(dump: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, phys = dump
    code, out, err = _run(capsys, "search", path, "-p", "-m", "0xffffffff", "0xfeedface00000000", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["space"] == "physical" and data["hits"] == [{"address": hex(phys + 0x40), "value": hex(VALUE)}]
    assert data["scanned"] > 0


def test_ranges_widths_and_strings(dump: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    path, phys = dump
    base = VMALLOC + 2 * 4096
    code, out, _ = _run(capsys, "search", path, "-s", f"{base:#x}", "-l", "0x1000", "-32", "0xfeedface")
    assert code == 0 and out.splitlines() == [f"{base + 0x44:x}: feedface"]
    code, out, _ = _run(capsys, "search", path, "-s", f"{base + 0x48:#x}", "-e", f"{base + 0x1000:#x}",
                        f"{VALUE:#x}")
    assert code == 0 and out == ""
    code, out, _ = _run(capsys, "search", path, "-p", "-c", "planted-string")
    assert code == 0 and out.splitlines() == [f"{phys + 0x80:x}: planted-string"]


@pytest.mark.parametrize(("args", "message"), [
    (("-e", "0x2000", "-l", "16", "0x1"), "-e and -l exclude each other"),
    (("-c", "x", "0x1"), "either VALUE or -c STRING"),
    (("-u", "1", "-p", "0x1"), "-u and -p exclude each other"),
    (("-8", "0x1ff"), "does not fit in 8 bits"),
    (("-s", "0x2000", "-e", "0x1000", "0x1"), "empty range"),
    (("-p", "no_such_symbol"), "kallsyms"),  # the synthetic kernel has no symbols at all
])
def test_bad_input_is_one_line(dump: tuple[Path, int], capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                               message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    code, out, err = _run(capsys, "search", dump[0], *args)
    assert code != 0 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
