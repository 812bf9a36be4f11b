"""CLI: kcrash sym on a synthetic dump whose kernel text holds kallsyms tables (no vmlinux anywhere)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.debuginfo.kallsyms import encode_kallsyms
from kcrash.dumps.write.synthetic import make_synthetic_kernel

KASLR = 0x1E00000
TEXT_PHYS = 0x200000  # where make_synthetic_kernel puts _stext physically
TABLES_OFFSET = 0x100000


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sym")
    k = make_synthetic_kernel(kaslr_offset=KASLR)
    plain = tmp / "no-kallsyms.elf"
    k.write_elf(plain)
    no_vmcoreinfo = tmp / "no-vmcoreinfo.elf"
    k.write_elf(no_vmcoreinfo, with_vmcoreinfo=False)
    s = k.stext
    rows = [("A", "runqueues", 0x31C40), ("T", "startup_64", s), ("T", "_stext", s), ("T", "schedule", s + 0x100),
            ("t", "helper", s + 0x180), ("T", "dead", s + 0x200), ("t", "helper", s + 0x300),
            ("T", "_etext", s + 0x1000), ("D", "init_uts_ns", s + 0x1000), ("B", "_end", s + 0x200000)]
    image = encode_kallsyms(rows, base=s + TABLES_OFFSET, address_encoding="absolute-percpu",
                            percpu=frozenset({"runqueues"}))
    k.image.write(TEXT_PHYS + TABLES_OFFSET, image.data)
    k.vmcoreinfo += "\n".join(image.vmcoreinfo_lines()) + "\n"
    with_kallsyms = tmp / "vmcore.kdump"
    k.write_kdump(with_kallsyms, flattened=True, dump_level=1)
    return {"kallsyms": with_kallsyms, "plain": plain, "no_vmcoreinfo": no_vmcoreinfo}


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
    assert by_name["matches"] == [{"name": "dead", "address": stext + 0x200, "size": 0x100, "kind": "T",
                                   "module": None}]
    assert by_addr["formatted"] == "dead+0x1/0x100" and by_addr["offset"] == 1
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
