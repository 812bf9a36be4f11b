"""The one address/number rule (kcrash.cli.params) and every command that takes an address or a
number: garbage is a usage error (exit status 2, click's usage format, no traceback), the good forms
work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.cli.params import AddressArg, parse_number
from kcrash.debuginfo.kallsyms import encode_kallsyms
from kcrash.errors import CliError
from support.synthetic import make_synthetic_kernel

KASLR = 0x1E00000
STEXT = 0xFFFFFFFF81000000 + KASLR


@pytest.mark.parametrize(("text", "mode", "value"), [
    ("0x1000", "address", 0x1000), ("0XFF", "address", 0xFF), ("ffffffff81000000", "address", 0xFFFFFFFF81000000),
    ("00001000", "address", 0x1000), ("12345678", "address", 0x12345678),
    ("ffff", "symbol", AddressArg("ffff", symbol="ffff")), ("schedule+0x10", "symbol",
                                                           AddressArg("schedule+0x10", symbol="schedule", offset=16)),
    ("schedule+10", "symbol", AddressArg("schedule+10", symbol="schedule", offset=10)),
    ("0x10", "symbol", AddressArg("0x10", address=16)),
    ("__func__.1", "symbol", AddressArg("__func__.1", symbol="__func__.1")),
    ("&init_task.tasks", "expression", AddressArg("&init_task.tasks", symbol="&init_task.tasks")),
    ("ffffffff81000000", "expression", AddressArg("ffffffff81000000", address=0xFFFFFFFF81000000)),
    ("10", "number", 10), ("0x10", "number", 16), ("1.5", "seconds", 1.5), ("3", "seconds", 3.0),
    ("1234", "pid_or_address", 1234), ("0x1234", "pid_or_address", 0x1234),
    ("ffff888003a10000", "pid_or_address", 0xFFFF888003A10000), ("1a2b", "hex", 0x1A2B), ("0x1a2b", "hex", 0x1A2B),
])
def test_rule_accepts(text: str, mode: str, value: object) -> None:
    assert parse_number(text, mode, "thing") == value  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "mode"), [
    ("zz", "address"), ("ffff", "address"), ("1000", "address"), ("0x", "address"), ("0xq", "address"),
    ("", "address"), ("1" * 17, "address"), ("0x1" + "0" * 16, "address"), ("-1", "address"),
    ("12ab", "symbol"), ("1000", "symbol"), ("foo+", "symbol"), ("foo+bar", "symbol"), ("a b", "symbol"),
    ("zz", "number"), ("-1", "number"), ("1.5", "number"), ("0x", "number"), ("٣", "number"),
    ("soon", "seconds"), ("-1", "seconds"), ("nan", "seconds"), ("inf", "seconds"),
    ("12345678x", "pid_or_address"), ("pid", "pid_or_address"), ("-5", "pid_or_address"),
    ("zz", "hex"), ("", "hex"), (" ", "expression"), ("0x12g", "expression"), ("0xq", "symbol"),
])
def test_rule_refuses(text: str, mode: str) -> None:
    with pytest.raises(CliError) as info:
        parse_number(text, mode, "thing")  # type: ignore[arg-type]
    assert info.value.exit_code == 2 and str(info.value).startswith("invalid thing: ")


def test_short_hex_is_told_to_use_0x() -> None:
    with pytest.raises(CliError, match="for hex write 0x1000"):
        parse_number("1000", "symbol", "address")


# --- every command -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A kdump whose kernel text holds kallsyms tables (for dis and sym) and VMCOREINFO (rd, vtop).
    tmp = tmp_path_factory.mktemp("params")
    k = make_synthetic_kernel(kaslr_offset=KASLR)
    s = k.stext
    rows = [("T", "startup_64", s), ("T", "_stext", s), ("T", "schedule", s + 0x100), ("T", "dead", s + 0x200),
            ("T", "_etext", s + 0x1000), ("D", "init_uts_ns", s + 0x1000), ("B", "_end", s + 0x200000)]
    image = encode_kallsyms(rows, base=s + 0x100000, address_encoding="absolute-percpu")
    k.image.write(0x200000 + 0x100000, image.data)
    k.vmcoreinfo += "\n".join(image.vmcoreinfo_lines()) + "\n"
    path = tmp / "vmcore.kdump"
    k.write_kdump(path, dump_level=1)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path / "cache"))


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_usage_error(code: int, out: str, err: str, command: str) -> None:
    assert code == 2, err
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    if lines[0].startswith("kcrash: error:"):
        assert len(lines) == 1
        return
    assert lines[0].startswith(f"Usage: kcrash {command}")
    assert [line for line in lines if line.startswith("Error:")] == [lines[-1]]


_GARBAGE = [
    ("rd", "DUMP", "9zz"), ("rd", "DUMP", "1000"), ("rd", "DUMP", "0xq"), ("rd", "DUMP", "init_uts_ns+zz"),
    ("rd", "DUMP", "0x1000", "-n", "zz"), ("vtop", "DUMP", "0xq"), ("vtop", "DUMP", "ffffffff82e00000", "--pgd", "zz"),
    ("vtop", "DUMP", "ffffffff82e00000", "--cr3", "0xq"), ("vtop", "DUMP", "ffffffff82e00000", "--pgd", "1000"),
    ("dis", "DUMP", "12ab"), ("dis", "DUMP", "schedule+"), ("dis", "DUMP", "schedule+zz"),
    ("dis", "DUMP", "schedule", "--count", "zz"), ("dis", "DUMP", "schedule", "-l", "--module-base", "ext4=zz"),
    ("sym", "DUMP", "schedule", "1000"), ("sym", "DUMP", "0xfffffffffffffffff"),
    ("struct", "DUMP", "task_struct", " "), ("addr2line", "-e", "DUMP", "zz"),
    ("addr2line", "-e", "DUMP", "--base", "zz", "0x10"),
]


@pytest.mark.parametrize("args", _GARBAGE, ids=" ".join)
def test_garbage_is_a_usage_error(dump: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = _run(capsys, *(dump if a == "DUMP" else a for a in args))
    _assert_usage_error(code, out, err, args[0])


def test_rd_and_vtop_good_forms(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "rd", dump, "init_uts_ns+1", "-a")
    assert code == 0 and out.strip().endswith("inux")
    for address in ("0x1000", "00001000"):
        code, out, _ = _run(capsys, "rd", dump, "-p", address, "-8", "--json")
        assert code == 0 and json.loads(out)["address"] == "0x1000"
    code, out, _ = _run(capsys, "dump", "info", dump, "--json")
    root = json.loads(out)["page_table_root"]
    for option in ("--pgd", "--cr3"):
        code, out, err = _run(capsys, "vtop", dump, "ffffffff82e00000", option, root, "--json")
        assert code == 0, err
        assert json.loads(out)["root"] == root and json.loads(out)["physical"] is not None


def test_rd_unknown_symbol_is_one_line(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "rd", dump, "ffff")
    assert code == 1 and out == ""
    assert err.startswith("kcrash: error: symbol 'ffff' not found") and err.count("\n") == 1


def test_dis_and_sym_good_forms(dump: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "dis", dump, "schedule+16", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["address"] == hex(STEXT + 0x110)
    code, out, _ = _run(capsys, "dis", dump, f"{STEXT + 0x100:x}", "--count", "1", "--json")
    assert code == 0 and json.loads(out)[0]["address"] == hex(STEXT + 0x100)
    code, out, _ = _run(capsys, "sym", dump, "schedule+0x5", f"{STEXT + 0x201:x}", "dead", "--json")
    assert code == 0
    plus, by_addr, by_name = json.loads(out)
    assert plus["formatted"] == "schedule+0x5/0x100" and by_addr["formatted"] == "dead+0x1/0xe00"
    assert by_name["matches"][0]["address"] == hex(STEXT + 0x200)
