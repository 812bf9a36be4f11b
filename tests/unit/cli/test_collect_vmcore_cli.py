"""``kcrash collect vmcore`` as makedumpfile's stand-in: the argument vectors kdump-tools builds, the
codec flags, makedumpfile's exit codes (1 for a bad command line too), --message-level, -f, -F to a
pipe, and the progress line (only on a terminal)."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.cli.progress import format_progress, progress_lines
from kcrash.dumps import open_dump
from kcrash.dumps.kdump_compressed import KdumpCompressed
from support.synthetic import make_synthetic_kernel


@pytest.fixture
def vmcore(tmp_path: Path) -> Path:
    path = tmp_path / "vmcore"
    make_synthetic_kernel().write_elf(path, qemu_layout=False)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["collect", "vmcore", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _status(path: Path) -> int:
    dump = open_dump(path)
    assert isinstance(dump, KdumpCompressed)
    status = dump.header.status
    dump.close()
    return status


def test_kdump_tools_vector(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # kdump-config: makedumpfile $MAKEDUMP_ARGS $vmcore_file $KDUMP_CORETEMP (here -d 1: the synthetic
    # kernel has no struct page facts for the higher levels)
    out = tmp_path / "dump-incomplete"
    code, stdout, err = _run(capsys, "-c", "-d", "1", vmcore, out)
    assert code == 0, err
    assert stdout.endswith(f"\nThe dumpfile is saved to {out}.\n\nkcrash collect vmcore Completed.\n")
    assert _status(out) == 0x1  # DUMP_DH_COMPRESSED_ZLIB, not incomplete


@pytest.mark.parametrize(("args", "status"), [(["-l"], 0x2), (["-p"], 0x4), (["-z"], 0x20), ([], 0),
                                              (["-c", "zstd"], 0x20), (["-c", "lzo"], 0x2),
                                              (["--compress", "snappy"], 0x4)])
def test_codec_flags(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                     status: int) -> None:
    out = tmp_path / "out"
    code, _, err = _run(capsys, *args, "-d", "1", vmcore, out)
    assert code == 0, err
    assert _status(out) == status


@pytest.mark.parametrize("args", [["-d", "40"], ["-d", "x"], ["-l", "-z"], ["-E", "-c"], ["--bogus"], [],
                                  ["-F", "a", "b"]])
def test_bad_command_lines_exit_1_like_makedumpfile(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: list[str]) -> None:
    extra = [vmcore, tmp_path / "out"] if args and args[0] != "-F" else []
    code, _, err = _run(capsys, *args, *extra)
    assert code == 1 and err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_f(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_bytes(b"precious")
    code, stdout, err = _run(capsys, "-d", "1", vmcore, out)
    assert code == 1 and "File exists" in err and "Failed." in stdout and out.read_bytes() == b"precious"
    code, _, err = _run(capsys, "-f", "-d", "1", vmcore, vmcore)
    assert code == 1 and "is the input dump" in err
    code, _, _ = _run(capsys, "-f", "-d", "1", vmcore, out)
    assert code == 0 and _status(out) == 0


def test_message_levels(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # -d 31 needs struct page facts the synthetic VMCOREINFO lacks: FAILED, said on stderr (bit 4)
    code, stdout, err = _run(capsys, "-d", "31", vmcore, tmp_path / "a")
    assert code == 1 and "kcrash: error:" in err and "Failed." in stdout
    code, stdout, err = _run(capsys, "--message-level", "0", "-d", "31", vmcore, tmp_path / "a")
    assert (code, stdout, err) == (1, "", "")
    code, stdout, err = _run(capsys, "-q", "-d", "1", vmcore, tmp_path / "b")
    assert (code, stdout, err) == (0, "", "")
    code, stdout, _ = _run(capsys, "--show-stats", "-x", "/nonexistent/vmlinux", "-d", "1", vmcore, tmp_path / "c")
    assert code == 0 and "Pages filled with zero" in stdout and "Remaining pages" in stdout


def test_json(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, "--json", "-c", "-d", "1", vmcore, tmp_path / "out")
    data = json.loads(stdout)
    assert code == 0 and data["exit_status"] == 0 and not data["incomplete"]
    assert data["pages_written"] == data["pages_total"] == data["remaining"] + data["excluded"]["zero"]


def test_vmcore_defaults_to_proc_vmcore(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kcrash.cli.collect._VMCORE", str(vmcore))
    code, _, err = _run(capsys, "-c", "-d", "1", tmp_path / "out")
    assert code == 0, err
    assert _status(tmp_path / "out") == 1


def test_flattened_to_stdout(vmcore: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    with flat.open("wb") as f:
        run = subprocess.run([sys.executable, "-m", "kcrash.cli", "collect", "vmcore", "-c", "-d", "1", "-F",
                              str(vmcore)], stdout=f, stderr=subprocess.PIPE, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "kcrash collect vmcore Completed." in run.stderr  # common messages move to stderr with -F
    assert flat.read_bytes().startswith(b"makedumpfile\0")
    dump = open_dump(flat)
    assert isinstance(dump, KdumpCompressed) and dump.flattened and not dump.incomplete
    dump.close()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line() -> None:
    assert format_progress("Copying data", 500, 1000, 2.0) == \
        "Copying data : [ 50.0 %] 500/1,000 pages     1.0 MB/s  eta: 2s"
    assert format_progress("x", 0, 0, 0.0).startswith("x : [100.0 %] 0/0 pages")
    tty = _Tty()
    with progress_lines("Copying data", stream=tty) as progress:
        assert progress is not None
        progress(10, 20)
        progress(20, 20)
    lines = tty.getvalue()
    assert lines.startswith("\rCopying data : [ 50.0 %] 10/20 pages") and lines.endswith("eta: 0s\n")
    assert "[100.0 %] 20/20 pages" in lines


@pytest.mark.parametrize(("stream", "quiet"), [(io.StringIO(), False), (_Tty(), True)])
def test_no_progress_on_a_pipe_or_when_quiet(stream: io.StringIO, quiet: bool) -> None:
    with progress_lines("Copying data", quiet=quiet, stream=stream) as progress:
        assert progress is None
    assert stream.getvalue() == ""


@pytest.mark.parametrize("command", [["collect", "vmcore", "-c"], ["dump", "convert", "-c", "zlib"]])
def test_commands_draw_progress_on_a_terminal_only(vmcore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*command, "-d", "1", str(vmcore), str(tmp_path / "a")]) == 0
    drawn = tty.getvalue()
    assert "[100.0 %]" in drawn and "MB/s" in drawn and drawn.endswith("eta: 0s\n")
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*command, "-q", "-d", "1", str(vmcore), str(tmp_path / "b")]) == 0
    assert "%]" not in tty.getvalue()
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*command, "-d", "1", str(vmcore), str(tmp_path / "c")]) == 0  # stderr captured: not a terminal
    assert "%]" not in capsys.readouterr().err


def _size_cap(monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    # os.pwrite as on a disk with room for ``cap`` bytes per file: writes past it fail with ENOSPC
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if offset + len(data) > cap:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_a_full_disk_retries_the_next_level_of_a_list(vmcore: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # makedumpfile -d 0,1: level 0 (992 raw pages, ~4 MB) does not fit in 2.5 MB, level 1 (398 pages) does
    _size_cap(monkeypatch, 2_500_000)
    out = tmp_path / "out"
    code, stdout, err = _run(capsys, "--json", "-d", "0,1", vmcore, out)
    assert code == 0, err
    assert "Retry to create a dumpfile by dump_level(1)." in stdout
    data = json.loads(stdout[stdout.index("{"):])
    assert not data["incomplete"] and data["excluded"]["zero"] > 0
    dump = open_dump(out)
    assert isinstance(dump, KdumpCompressed) and not dump.incomplete and dump.header.dump_level == 1
    dump.close()
    # a single level has nothing to fall back to: the cut dump is kept, flagged, and the status is FAILED
    code, stdout, err = _run(capsys, "-d", "0", vmcore, tmp_path / "cut")
    assert code == 1 and "INCOMPLETE (No space left on device)" in err and "Retry" not in stdout
    assert _status(tmp_path / "cut") & 0x8
