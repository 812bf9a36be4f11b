"""Crash safety of ``kcrash dump convert``: a full filesystem (a size-limited tmpfs) gives a file
flagged incomplete that reads with a warning and no complete-looking file; a SIGKILLed convert leaves
nothing under the final name; conversion of a synthetic dump keeps every page."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.dumps import DumpWarning, open_dump
from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore
from kcrash.dumps.write.output import temporary_path
from support.synthetic import make_synthetic_kernel


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_filesystem_flags_the_dump_incomplete(tmp_path: Path, small_tmpfs: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    k = make_synthetic_kernel()
    src = tmp_path / "vmcore"
    k.write_elf(src, qemu_layout=False)
    out = small_tmpfs / "dump.kdump"
    code = main(["dump", "convert", str(src), str(out), "-d", "1", "-c", "none"])
    err = capsys.readouterr().err
    assert code == 1 and "INCOMPLETE" in err and "No space left" in err
    assert out.exists() and not temporary_path(out).exists()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dump = open_dump(out)
    assert any(issubclass(w.category, DumpWarning) for w in caught)
    desc = dump.describe()
    assert desc.incomplete and desc.pages.lost > 0
    pages = k.pages()
    read = 0
    for pfn, data in pages.items():
        if 0xA0 <= pfn < 0xC0 or not any(data):
            continue
        try:
            got = dump.segments()[0].read_fn(pfn * 4096, 4096) if pfn < 0xA0 else \
                dump.segments()[1].read_fn(pfn * 4096, 4096)
        except Exception:
            continue
        assert got == data
        read += 1
    assert read > 100
    dump.close()
    code = main(["dump", "info", str(out)])
    assert code == 0 and "incomplete" in capsys.readouterr().err


def test_convert_keeps_every_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    k = make_synthetic_kernel()
    src = tmp_path / "vmcore"
    k.write_elf(src, qemu_layout=False)
    for fmt, codec in (("kdump", "zstd"), ("flat", "zlib"), ("elf", "none")):
        out = tmp_path / f"out.{fmt}"
        assert main(["dump", "convert", str(src), str(out), "-d", "1", "-c", codec, "--format", fmt,
                     "--threads", "2", "--json"]) == 0
        capsys.readouterr()
        dump = open_dump(out)
        segs = [s for s in dump.segments() if s.physical]
        for pfn, data in k.pages().items():
            if 0xA0 <= pfn < 0xC0:
                continue
            seg = next(s for s in segs if s.start <= pfn * 4096 < s.end)
            assert seg.read_fn(pfn * 4096, 4096) == data, (fmt, pfn)
        dump.close()


def test_bad_level_and_missing_vmcoreinfo_are_one_line_errors(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    k = make_synthetic_kernel()
    src = tmp_path / "vmcore"
    k.write_elf(src, qemu_layout=False, with_vmcoreinfo=False)
    assert main(["dump", "convert", str(src), str(tmp_path / "o"), "-d", "31"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kcrash: error:") and "VMCOREINFO" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    assert main(["dump", "dmesg", str(src)]) == 1
    assert "VMCOREINFO" in capsys.readouterr().err


def test_killed_convert_leaves_no_final_file(tmp_path: Path) -> None:
    src = tmp_path / "big.vmcore"
    ram = os.urandom(1 << 20) * 96  # 96 MiB: compresses slowly enough to be killed midway
    write_elf_vmcore(src, b"", [bytes_segment(0, ram)])
    out = tmp_path / "out.kdump"
    proc = subprocess.Popen([sys.executable, "-m", "kcrash", "dump", "convert", str(src), str(out), "-d", "0",
                             "-c", "zlib"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = out.with_name(f".{out.name}.kcrash-tmp-{proc.pid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (tmp.exists() and tmp.stat().st_size > 1 << 20):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists(), "the conversion finished before it could be killed"
    assert not out.exists()
