"""``kcrash dump convert`` / ``kcrash collect qemu`` output safety: an existing OUT is kept unless
--force; a full disk (os.pwrite failing with ENOSPC past a byte budget, in-place rewrites allowed as
on a real full disk) leaves either no OUT or one flagged incomplete, never a complete-looking one nor
a temporary file; a SIGKILLed writer leaves no OUT (its temporary file is flagged incomplete)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.collect.convert import ConvertOptions
from kcrash.collect.qemu import GuestCapture, write_capture
from kcrash.collect.source import RamRange
from kcrash.dumps import open_dump
from support.synthetic import make_synthetic_kernel

_FORMATS = [("kdump", "zlib"), ("flat", "none"), ("elf", "none")]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("convert") / "vmcore"
    make_synthetic_kernel(seed=7).write_elf(path, qemu_layout=False)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".kcrash-tmp-" in p.name)


def _full_disk(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    # os.pwrite as on a filesystem with ``budget`` bytes free: new blocks past it fail with ENOSPC
    # (after a short write that fills the budget), rewrites inside the file's size succeed.
    real = os.pwrite
    left = [budget]

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        size = os.fstat(fd).st_size
        grow = max(0, offset + len(data) - size)
        if grow <= left[0]:
            left[0] -= grow
            return real(fd, data, offset)
        if left[0] > 0 and offset <= size:
            n = size - offset + left[0]
            left[0] = 0
            return real(fd, bytes(data)[:n], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("kcrash.dumps.write.output.os.pwrite", pwrite)


def test_existing_output_is_kept_unless_force(source: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.kdump"
    out.write_bytes(b"precious")
    code, stdout, err = _run(capsys, "dump", "convert", source, out, "-d", "1")
    assert (code, stdout) == (1, "") and err == f"kcrash: error: {out} exists: give --force to replace it\n"
    assert out.read_bytes() == b"precious"
    code, _, err = _run(capsys, "dump", "convert", source, source, "-d", "1", "--force")
    assert code == 1 and err == f"kcrash: error: {source} is the input dump: give another output file\n"
    code, _, err = _run(capsys, "dump", "convert", source, out, "-d", "1", "--force")
    assert code == 0, err
    assert open_dump(out).describe().incomplete is False
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("fmt", "codec"), _FORMATS)
@pytest.mark.parametrize("budget", [0, 100, 6000, 200_000])
def test_full_disk(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str], fmt: str, codec: str, budget: int) -> None:
    out = tmp_path / "out"
    _full_disk(monkeypatch, budget)
    code, _, err = _run(capsys, "dump", "convert", source, out, "-d", "1", "-c", codec, "--format", fmt)
    monkeypatch.undo()
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("kcrash: error: "), err
    assert "No space left on device" in err
    assert _leftovers(tmp_path) == []
    if not out.exists():
        return
    assert "INCOMPLETE" in err
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        dump = open_dump(out)
    desc = dump.describe()
    assert desc.incomplete
    dump.close()


def test_collect_on_a_full_disk_is_flagged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    k = make_synthetic_kernel(seed=3)
    ram = tmp_path / "guest.ram"
    ram.write_bytes(b"".join(k.pages().values()))
    guest = GuestCapture(ram, [RamRange(0, k.ram_pages * 4096, 0)], [], "paused", False)
    out = tmp_path / "guest.kdump"
    _full_disk(monkeypatch, 200_000)
    result, _ = write_capture(guest, out, ConvertOptions(dump_level=1, codec="none"))
    monkeypatch.undo()
    assert result.write.incomplete and result.write.reason == "No space left on device"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert open_dump(out).describe().incomplete
    assert _leftovers(tmp_path) == []
    _full_disk(monkeypatch, 0)
    with pytest.raises(OSError, match="No space left"):
        write_capture(guest, tmp_path / "none.kdump", ConvertOptions(dump_level=1, codec="none"))
    assert not (tmp_path / "none.kdump").exists() and _leftovers(tmp_path) == []


_SLOW_WRITER = """
import sys, time
from kcrash.dumps.write import output
real = output.DumpOutput.write
def slow(self, offset, data):
    real(self, offset, data)
    time.sleep(0.02)
output.DumpOutput.write = slow
from kcrash.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("fmt", "codec"), _FORMATS)
def test_killed_writer_leaves_no_output(source: Path, tmp_path: Path, fmt: str, codec: str) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, "dump", "convert", str(source), str(out), "-d", "1",
                             "-c", codec, "--format", fmt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = out.with_name(f".{out.name}.kcrash-tmp-{proc.pid}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp.exists() and tmp.stat().st_size > 64 * 1024):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists(), "the conversion finished before it could be killed"
    assert not out.exists()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        dump = open_dump(tmp)
    assert dump.describe().incomplete
    dump.close()
