"""CLI: kcrash dump info / rd / vtop on synthetic dumps, JSON output, one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main
from support.synthetic import make_synthetic_kernel


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    k = make_synthetic_kernel(kaslr_offset=0x1E00000)
    k.write_elf(tmp / "vmcore.elf")
    k.write_kdump(tmp / "vmcore.kdump", flattened=True, dump_level=1)
    return tmp / "vmcore.elf", tmp / "vmcore.kdump"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dump_info_json(dumps: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for path in dumps:
        code, out, _ = _run(capsys, "dump", "info", path, "--json")
        assert code == 0
        data = json.loads(out)
        assert data["kernel_release"] == "6.1.0-synthetic"
        assert data["kaslr_offset"] == "0x1e00000"
        assert data["build_id"] == "00112233445566778899aabbccddeeff00112233"
        assert data["crash_time"] == 1700000000
        assert data["panic_cpu"] == 1
        assert [c["registers"]["rax"] for c in data["cpus"]] == ["0x0", "0x1"]
        assert [c["qemu_cpu_index"] for c in data["cpus"]] == [0, 1]
        assert not any("pid" in c or "pr_pid" in c for c in data["cpus"])
    assert "zlib" in data["codecs"] and data["pages"]["zero"] > 0


def test_dump_info_text(dumps: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "dump", "info", dumps[1])
    assert code == 0
    assert "KASLR offset: 0x1e00000" in out and "panicked CPU: 1" in out and "(panicked)" in out
    # QEMU's NT_PRSTATUS pr_pid is the vCPU index + 1, not a pid (issue 22)
    assert "\nCPU 0  QEMU CPU #0\n" in out and "\nCPU 1  QEMU CPU #1  (panicked)\n" in out and " pid " not in out


def test_rd(dumps: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "rd", dumps[1], "init_uts_ns", "-a")
    assert code == 0 and out.strip().endswith("Linux")
    code, out, _ = _run(capsys, "rd", dumps[0], "-p", "0x1000", "-8", "-n", "10")
    assert code == 0 and out.startswith("1000:  6c 6f 77 20 6d 65 6d 6f 72 79") and "low memory" in out
    code, out, _ = _run(capsys, "rd", dumps[0], "-p", "0x1000", "-32", "-n", "2", "--json")
    assert json.loads(out)["values"] == ["0x20776f6c", "0x6f6d656d"]


def test_vtop(dumps: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "vtop", dumps[1], "ffffffff82e00000")
    assert code == 0 and "200000" in out and "(2MB)" in out and "PMD:" in out
    code, out, _ = _run(capsys, "vtop", dumps[1], "ffffc90000000000", "--json")
    data = json.loads(out)
    assert [e["level"] for e in data["entries"]] == ["PGD", "PUD", "PMD", "PTE"]
    code, out, _ = _run(capsys, "vtop", dumps[1], "ffffc90100000000")
    assert code == 1 and "not present" in out


@pytest.mark.parametrize("damage", ["truncate", "bitmap_blocks", "garbage"])
def test_bad_input_is_one_line(dumps: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               damage: str) -> None:
    data = bytearray(dumps[1].read_bytes())
    if damage == "truncate":
        data = data[:5000]
    elif damage == "bitmap_blocks":
        rebuilt = tmp_path / "plain"
        make_synthetic_kernel().write_kdump(rebuilt)
        data = bytearray(rebuilt.read_bytes())
        data[436:440] = (0xFFFFFFF0).to_bytes(4, "little")
    else:
        data = bytearray(b"nonsense" * 100)
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(data))
    for args in (("dump", "info", bad), ("rd", bad, "0x0"), ("vtop", bad, "0x0")):
        code, out, err = _run(capsys, *args)
        assert code != 0
        assert err.count("\n") == 1 and err.startswith("kcrash: error:"), err
        assert "Traceback" not in err + out


def test_fault_is_one_line(dumps: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "rd", dumps[1], "-p", "0xa0000")
    assert code == 1 and err.strip() == "kcrash: error: cannot read physical address 0xa0000: not in the dump"
