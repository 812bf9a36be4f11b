"""Files to crash records: console logs, dmesg, syslog exports, pstore records; skipped and unreadable files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from kcrash.fleet.extract import UNKNOWN_HOST, ExtractOptions, classify_file, extract_file, iter_input_files
from kcrash.oops.parser import parse_all

_OOPS = [
    "BUG: kernel NULL pointer dereference, address: 0000000000000000",
    "#PF: supervisor read access in kernel mode",
    "Oops: 0000 [#1] PREEMPT SMP NOPTI",
    "CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.158-1",
    "RIP: 0010:foo_bar+0x9/0x10 [kcrash_test]",
    "RAX: 0000000000000000 RBX: ffff888003a3c000 RCX: 0000000000000000",
    "Call Trace:",
    " <TASK>",
    " baz_caller+0x1/0x2",
    " </TASK>",
]
_WHEN = dt.datetime(2026, 3, 4, 5, 6, 7)


def _write(path: Path, lines: list[str], mtime: dt.datetime = _WHEN) -> Path:
    path.write_text("\n".join(lines) + "\n")
    stamp = mtime.replace(tzinfo=dt.UTC).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def _console(path: Path) -> Path:
    return _write(path, ["booting", *(f"[   12.{i:06d}] {line}" for i, line in enumerate(_OOPS)), "end"])


def test_console_log_gives_the_parser_report(tmp_path: Path) -> None:
    path = _console(tmp_path / "console.log")
    expected = parse_all(path.read_text())
    result = extract_file(path)
    assert (result.kind, result.error, result.size) == ("log", None, path.stat().st_size)
    (record,) = result.records
    assert (record.title, record.signature, record.alt_titles) == (
        expected[0].title,
        expected[0].signature,
        expected[0].alt_titles,
    )
    assert record.kind == expected[0].crash_type
    assert (record.kernel_release, record.arch, record.taints) == ("6.1.0-56-amd64", "x86_64", "GOE")
    assert (record.host, record.crash_time, record.source) == (UNKNOWN_HOST, _WHEN, "log")
    assert record.guilty_frame == "foo_bar"
    assert record.report_json is None and "Oops: 0000" in record.excerpt


def test_host_option_overrides_and_changes_the_dedup_key(tmp_path: Path) -> None:
    path = _console(tmp_path / "console.log")
    plain = extract_file(path).records[0]
    named = extract_file(path, ExtractOptions(host="db-3")).records[0]
    assert named.host == "db-3"
    assert named.content_hash != plain.content_hash
    assert extract_file(path).records[0].content_hash == plain.content_hash


def test_syslog_prefix_gives_host_and_time(tmp_path: Path) -> None:
    lines = [f"Mar  4 05:06:{i:02d} web-17 kernel: [   12.{i:06d}] {line}" for i, line in enumerate(_OOPS)]
    (record,) = extract_file(_write(tmp_path / "kern.log", lines, dt.datetime(2026, 12, 1))).records
    assert (record.host, record.crash_time) == ("web-17", dt.datetime(2026, 3, 4, 5, 6, 0))


def test_iso_syslog_time_is_converted_to_utc(tmp_path: Path) -> None:
    lines = [f"2026-03-04T07:06:{i:02d}.5+02:00 db-1 kernel: {line}" for i, line in enumerate(_OOPS)]
    (record,) = extract_file(_write(tmp_path / "journal.txt", lines)).records
    assert (record.host, record.crash_time) == ("db-1", dt.datetime(2026, 3, 4, 5, 6, 0, 500000))


def test_pstore_record_and_dmesg_file_are_classified(tmp_path: Path) -> None:
    pstore = _write(tmp_path / "dmesg-ramoops-0", ["Panic#1 Part1", *(f"<4>[   12.3] {x}" for x in _OOPS)])
    dmesg = _write(tmp_path / "dmesg.txt", [f"[   12.3] {x}" for x in _OOPS])
    assert extract_file(pstore).kind == "pstore"
    assert extract_file(dmesg).kind == "dmesg"
    assert extract_file(pstore).records[0].signature == extract_file(dmesg).records[0].signature
    assert extract_file(pstore).records[0].source == "pstore"


def test_binary_and_compressed_files_are_skipped(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x7fXYZ\0\0\1")
    assert classify_file(blob, blob.read_bytes()) == ""
    assert classify_file(tmp_path / "dmesg-efi-1.enc.z", b"x") == ""
    result = extract_file(blob)
    assert (result.kind, result.records, result.error) == ("", (), None)


def test_missing_file_is_an_error_not_an_exception(tmp_path: Path) -> None:
    result = extract_file(tmp_path / "gone.log")
    assert result.error is not None and "gone.log" in result.error and result.records == ()


def test_text_without_crash_gives_no_record(tmp_path: Path) -> None:
    result = extract_file(_write(tmp_path / "boot.log", ["Linux version 6.1.0", "all fine"]))
    assert (result.kind, result.records) == ("log", ())


def test_input_files_recurse_sorted_without_hidden_or_lock_files(tmp_path: Path) -> None:
    for name in ("b/2.log", "b/1.log", "a.log", ".hidden/x.log", "b/.y", "c.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_input_files([tmp_path])]
    assert found == ["a.log", "b/1.log", "b/2.log"]
    assert list(iter_input_files([tmp_path / "a.log"])) == [tmp_path / "a.log"]
