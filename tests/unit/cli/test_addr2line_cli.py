"""kcrash addr2line: addr2line's output format, stdin batches, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.cli import main

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("addr2line") is None,
                                reason="gcc and binutils are needed")
SOURCE = """
static inline __attribute__((always_inline)) int twice(int x) { return x * 2; }
__attribute__((noinline)) int work(volatile int *p) { return twice(*p) + 1; }
int main(void) { volatile int v = 2; return work(&v); }
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("a2l")
    (tmp / "p.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-o", "p", "p.c"], cwd=tmp, check=True)
    return tmp / "p"


def addresses(program: Path) -> list[str]:
    out = subprocess.run(["nm", str(program)], capture_output=True, text=True, check=True).stdout
    work = next(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" work"))
    return [hex(work + k) for k in range(0, 12, 3)]


def test_output_equals_binutils(program: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-e", str(program), "-f", "-i", "-a", *addresses(program)]
    assert main(["addr2line", "--no-cache", *args]) == 0
    expected = subprocess.run(["addr2line", *args], capture_output=True, text=True, check=True).stdout
    assert capsys.readouterr().out == expected


def test_stdin_and_json(program: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import json

    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(addresses(program))))
    assert main(["addr2line", "--no-cache", "-e", str(program), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 4 and all(d["locations"] for d in data)


def test_bad_input_is_one_line(program: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["addr2line", "-e", str(program), "zz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: kcrash addr2line") and "Error: Invalid value for '[ADDRESSES]...': 'zz' is not" in err
    stripped = tmp_path / "stripped"
    subprocess.run(["objcopy", "--strip-debug", str(program), str(stripped)], check=True)
    assert main(["addr2line", "--no-cache", "-e", str(stripped), "0x1000"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stripped" in err
