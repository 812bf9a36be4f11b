"""CLI: kcrash sym on a synthetic dump whose kernel text holds kallsyms tables (no vmlinux anywhere)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kcrash.cli import main
from support.kallsyms_dump import KASLR, write_kallsyms_dumps


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_kallsyms_dumps(tmp_path_factory.mktemp("sym"))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sym_names_and_addresses(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str], _cache: Path) -> None:
    stext = 0xFFFFFFFF81000000 + KASLR
    code, out, err = _run(capsys, "sym", dumps["kallsyms"], "schedule", f"{stext + 0x105:#x}", "helper", "runqueues")
    assert code == 0, err
    assert out.splitlines() == [
        f"{stext + 0x100:016x} (T) schedule",
        f"{stext + 0x105:016x} (T) schedule+0x5/0x80",
        f"{stext + 0x180:016x} (t) helper",
        f"{stext + 0x300:016x} (t) helper",
        "0000000000031c40 (A) runqueues",
    ]
    assert any((_cache / "kallsyms").iterdir())  # the second run reads the cache
    code, out2, _ = _run(capsys, "sym", dumps["kallsyms"], "schedule", f"{stext + 0x105:#x}", "helper", "runqueues")
    assert code == 0 and out2 == out


def test_sym_json(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    stext = 0xFFFFFFFF81000000 + KASLR
    code, out, _ = _run(capsys, "sym", dumps["kallsyms"], "dead", f"{stext + 0x201:x}", "--json")
    assert code == 0
    by_name, by_addr = json.loads(out)
    assert by_name["matches"] == [{"name": "dead", "address": hex(stext + 0x200), "size": 0x100, "kind": "T",
                                   "module": None}]
    assert by_addr["formatted"] == "dead+0x1/0x100" and by_addr["offset"] == "0x1"
    assert by_addr["symbol"]["name"] == "dead"


def test_sym_misses_exit_nonzero(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "sym", dumps["kallsyms"], "schedule", "no_such_symbol", "0x10")
    assert code == 1
    assert out.strip().endswith("(T) schedule")
    assert "no_such_symbol: symbol not found" in err and "0x10: no symbol at this address" in err
    assert err.strip().splitlines()[-1] == "kcrash: error: 2 of 3 not found: no_such_symbol, 0x10"


@pytest.mark.parametrize(("which", "message"), [
    ("plain", r"no SYMBOL\(kallsyms_\*\).*no kallsyms tables were recognised.*--system-map or --vmlinux"),
    ("no_vmcoreinfo", r"no VMCOREINFO.*--system-map or --vmlinux"),
])
def test_sym_without_kallsyms_is_one_clear_line(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                which: str, message: str) -> None:
    code, out, err = _run(capsys, "sym", dumps[which], "schedule")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcrash: error: ")
    assert re.search(message, lines[0])


def test_sym_globs_regexes_substrings_and_list(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    stext = 0xFFFFFFFF81000000 + KASLR
    code, out, err = _run(capsys, "sym", dumps["kallsyms"], "s*e", "-r", "^hel", "-q", "ead", "--json")
    assert code == 0, err
    glob, regex, substring = json.loads(out)
    assert [m["name"] for m in glob["matches"]] == ["schedule"]
    assert [(m["name"], m["address"]) for m in regex["matches"]] == [("helper", hex(stext + 0x180)),
                                                                     ("helper", hex(stext + 0x300))]
    assert [m["name"] for m in substring["matches"]] == ["dead"]
    code, out, _ = _run(capsys, "sym", dumps["kallsyms"], "-l")
    assert code == 0 and len(out.splitlines()) == 10 and out.splitlines()[-1].endswith("(B) _end")
    code, out, _ = _run(capsys, "sym", dumps["kallsyms"], "_?t*")
    assert code == 0 and [line.split()[-1] for line in out.splitlines()] == ["_stext", "_etext"]


@pytest.mark.parametrize(("args", "message"), [
    (("zz*",), "1 of 1 not found: zz*"),
    (("-r", "(",), "invalid regular expression"),
    ((), "give NAME, ADDR or GLOB"),
])
def test_sym_pattern_errors_are_one_line(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                         args: tuple[str, ...], message: str) -> None:
    code, out, err = _run(capsys, "sym", dumps["kallsyms"], *args)
    assert code != 0 and out == "" and message in err.strip().splitlines()[-1]


def test_sym_says_when_an_address_is_past_a_module_symbols_own_size() -> None:
    # one answer to "is it inside the symbol": sym prints the kernel's %pS and, where the module's
    # ELF size says the address is past the symbol, says so, as kmem (identify) does
    from kcrash.cli.sym import lookup_query
    from kcrash.debuginfo.symbols import Symbol, SymbolTable

    module = 0xFFFFFFFFC0200000
    table = SymbolTable(["_stext", "_etext"], [0xFFFFFFFF81000000, 0xFFFFFFFF81001000], "TT")
    table.add_module("m", module, 0x1000, [Symbol("f", module, 0x20, "t", "m"),
                                           Symbol("g", module + 0x40, 0x8, "t", "m")], sized=True)
    inside = lookup_query(table, f"{module + 0x10:#x}")
    assert (inside["formatted"], inside["inside"], inside["object_size"]) == ("f+0x10/0x40 [m]", True, 0x20)
    assert "note" not in inside
    past = lookup_query(table, f"{module + 0x30:#x}")
    assert (past["formatted"], past["inside"]) == ("f+0x30/0x40 [m]", False)
    assert "past the end" in past["note"]
    kernel = lookup_query(table, "0xffffffff81000010")
    assert kernel["inside"] is True and "object_size" not in kernel
