"""CLI: rd and vtop take SYMBOL[+OFF] (kallsyms, VMCOREINFO), and rd -s prints words symbolically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from support.kallsyms_dump import STEXT, write_kallsyms_dumps


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_kallsyms_dumps(tmp_path_factory.mktemp("rd"))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_rd_symbolic_words(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "rd", dumps["kallsyms"], "-s", f"{STEXT + 0x1800:#x}", "-n", "4")
    assert code == 0, err
    assert out.splitlines() == [f"{STEXT + 0x1800:x}:  schedule         helper+5",
                                f"{STEXT + 0x1810:x}:  0000000000001234 dead"]
    code, out, _ = _run(capsys, "rd", dumps["kallsyms"], "-s", "_stext+0x1800", "-n", "4", "--json")
    data = json.loads(out)
    assert code == 0 and data["address"] == hex(STEXT + 0x1800)
    assert [s and (s["name"], s["offset"]) for s in data["symbols"]] == [("schedule", "0x0"), ("helper", "0x5"), None,
                                                                          ("dead", "0x0")]
    assert data["values"][2] == "0x1234"


def test_rd_and_vtop_take_symbols(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, by_symbol, err = _run(capsys, "rd", dumps["kallsyms"], "schedule+8", "-n", "2")
    assert code == 0, err
    code, by_address, _ = _run(capsys, "rd", dumps["kallsyms"], f"{STEXT + 0x108:#x}", "-n", "2")
    assert by_symbol == by_address
    code, out, _ = _run(capsys, "vtop", dumps["kallsyms"], "schedule", "--json")
    assert code == 0 and json.loads(out)["virtual"] == hex(STEXT + 0x100)


@pytest.mark.parametrize(("args", "message"), [
    (("no_such_symbol",), "symbol 'no_such_symbol' not found"),
    (("-s", "-32", "schedule"), "-s shows 64-bit words"),
])
def test_rd_errors_are_one_line(dumps: dict[str, Path], capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                message: str) -> None:
    code, out, err = _run(capsys, "rd", dumps["kallsyms"], *args)
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and message in err
