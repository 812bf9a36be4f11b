"""
kcrash.fleet.extract
====================

One file → the crash records in it, for the crash database. Console logs, ``dmesg`` output, syslog/journal
exports and pstore records (``/sys/fs/pstore/dmesg-*``, systemd-pstore archives) are parsed by
:mod:`kcrash.oops.stream` (one record per distinct report); dumps in any format kcrash reads are opened
with :func:`kcrash.analysis.target.open_target` and triaged into a :class:`~kcrash.model.CrashReport`,
stored with its JSON and HTML renderings. Records are plain frozen dataclasses that pickle, so that
worker processes can make them and the coordinator alone writes them (:mod:`kcrash.fleet.ingest`).
No database access here.

Deduplication keys (``content_hash``): a dump's SHA-256; a log report's SHA-256 over the host name and the
report's raw bytes (timestamps and syslog prefixes included, so that the same bug crashing twice is two
crashes, and the same file ingested twice is one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from kcrash.errors import FaultError, KcrashError, MissingDebugInfoError, ValidationError
from kcrash.oops.parser import parse
from kcrash.oops.signature import crash_signature
from kcrash.oops.stream import iter_reports

if TYPE_CHECKING:
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.model import CrashReport
    from kcrash.oops.model import OopsReport

__all__ = [
    "UNKNOWN_HOST",
    "CrashRecord",
    "ExtractOptions",
    "FileResult",
    "classify_file",
    "extract_file",
    "iter_input_files",
]

#: The host name of a crash whose log or dump names none, ingested without ``--host``.
UNKNOWN_HOST: Final = "unknown"
_HEAD: Final = 8192
_EXCERPT_MAX: Final = 16 << 10
_PSTORE_HEADER: Final = re.compile(rb"\A(?:Oops|Panic|Emergency|Restart|Halt|Poweroff|Unknown)#\d+ Part\d+\r?\n")
_PSTORE_NAME: Final = re.compile(r"^dmesg-[a-z_]+-\d+")
_DMESG_RAW: Final = re.compile(rb"\A<\d+>\[ *\d+\.\d+\] ")
_SYSLOG_BSD: Final = re.compile(r"^([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) kernel: ")
_SYSLOG_ISO: Final = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) (\S+) kernel: ")
_X86_64_REGS: Final = frozenset({"RIP", "RAX", "RSP"})
_ARM64_REGS: Final = frozenset({"pc", "lr", "x29"})
_ARCH_SUFFIXES: Final = (("-amd64", "x86_64"), ("-arm64", "aarch64"), ("-686", "i386"), ("-686-pae", "i386"))


@dataclass(frozen=True, slots=True)
class CrashRecord:
    """One crash, ready to store: what :class:`~kcrash.fleet.models.Crash` holds, plus ``alt_titles``
    (for title merges) and ``corrupted`` (the report is damaged). ``crash_time`` is naive UTC."""

    content_hash: str
    source: str
    path: str
    host: str
    kernel_release: str
    build_id: str
    arch: str
    crash_time: dt.datetime
    title: str
    alt_titles: tuple[str, ...]
    signature: str
    kind: str
    taints: str
    guilty_frame: str
    guilty_file: str
    excerpt: str
    corrupted: bool = False
    report_json: str | None = None
    report_html: str | None = None


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    """How to read files: ``host`` overrides the host name found in them; ``cache_dir`` is kcrash's cache
    (decoded kallsyms of dumps); ``html`` renders the HTML report of dumps."""

    host: str | None = None
    cache_dir: Path | None = None
    html: bool = True


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one file gave: its ``size`` in bytes, its ``kind`` (``dump``, ``log``, ``dmesg``, ``pstore``,
    or ``""`` when skipped), the records, and ``error`` when the file could not be read (one line)."""

    path: str
    size: int
    kind: str
    records: tuple[CrashRecord, ...]
    error: str | None = None


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Every regular file under ``paths`` (files as given, directories recursively, sorted; hidden
    files and ``*.lock`` files skipped)."""
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith(".") and not name.endswith(".lock"):
                    yield Path(root, name)


def classify_file(path: Path, head: bytes) -> str:
    """``dump``, ``pstore``, ``dmesg`` or ``log`` by the file's first bytes and name; ``""`` for a
    binary file that is no dump kcrash reads (or a compressed pstore record)."""
    # lazy: +64 ms CPU to import it after this module (measured, loaded host)
    from kcrash.dumps.registry import sniff_format

    try:
        sniff_format(head)
        return "dump"
    except KcrashError:
        pass
    if b"\0" in head or path.name.endswith((".enc.z", ".z", ".gz", ".zst", ".xz")):
        return ""
    if _PSTORE_HEADER.match(head) or _PSTORE_NAME.match(path.name):
        return "pstore"
    if "dmesg" in path.name or _DMESG_RAW.match(head):
        return "dmesg"
    return "log"


def extract_file(path: str | os.PathLike[str], options: ExtractOptions = ExtractOptions()) -> FileResult:
    """The crash records of the file at ``path`` (see the module docstring). Unreadable or damaged
    files give a result with ``error`` set, not an exception."""
    file = Path(path)
    try:
        size = file.stat().st_size
    except OSError as exc:
        return FileResult(str(file), 0, "", (), f"{file}: {exc.strerror or exc}")
    try:
        kind, records = _read(file, options)
    except OSError as exc:
        return FileResult(str(file), size, "", (), f"{file}: {exc.strerror or exc}")
    except KcrashError as exc:
        return FileResult(str(file), size, "", (), f"{file}: {exc}")
    return FileResult(str(file), size, kind, records)


def _read(file: Path, options: ExtractOptions) -> tuple[str, tuple[CrashRecord, ...]]:
    with file.open("rb") as stream:
        kind = classify_file(file, stream.read(_HEAD))
        stream.seek(0)
        if kind in ("log", "dmesg", "pstore"):
            return kind, tuple(_log_records(file, stream, kind, options))
    if kind == "dump":
        return kind, (_dump_record(file, options),)
    return "", ()


# --- logs ------------------------------------------------------------------------------------------


def _mtime(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)


def _log_records(path: Path, stream: BinaryIO, source: str, options: ExtractOptions) -> Iterator[CrashRecord]:
    mtime = _mtime(path)
    for report in list(iter_reports(stream)):
        stream.seek(report.start_pos)
        raw = stream.read(max(report.end_pos - report.start_pos, 0))
        yield _log_record(path, source, report, raw.decode("latin-1"), mtime, options)


def _syslog_prefix(raw: str, mtime: dt.datetime) -> tuple[dt.datetime | None, str]:
    # The time and host of a syslog/journal line ("Dec  7 12:00:01 web-17 kernel: ..." or ISO 8601).
    line = raw.lstrip("\r\n")
    bsd = _SYSLOG_BSD.match(line)
    if bsd:
        try:
            when = dt.datetime.strptime(f"{mtime.year} {bsd.group(1)}", "%Y %b %d %H:%M:%S")
        except ValueError:
            return None, bsd.group(2)
        return when, bsd.group(2)
    iso = _SYSLOG_ISO.match(line)
    if iso:
        try:
            stamp = dt.datetime.fromisoformat(iso.group(1))
        except ValueError:
            return None, iso.group(2)
        return _naive_utc(stamp), iso.group(2)
    return None, ""


def _naive_utc(stamp: dt.datetime) -> dt.datetime:
    return stamp if stamp.tzinfo is None else stamp.astimezone(dt.UTC).replace(tzinfo=None)


def _arch(registers: Iterable[str], release: str) -> str:
    names = set(registers)
    if names & _X86_64_REGS:
        return "x86_64"
    if names & _ARM64_REGS:
        return "aarch64"
    return next((arch for suffix, arch in _ARCH_SUFFIXES if release.endswith(suffix)), "")


def log_content_hash(host: str, raw: str) -> str:
    """The deduplication key of a log report: SHA-256 over the host name and the report's raw text."""
    return hashlib.sha256(f"{host}\0{raw}".encode("utf-8", "surrogateescape")).hexdigest()


def _log_record(
    path: Path, source: str, report: OopsReport, raw: str, mtime: dt.datetime, options: ExtractOptions
) -> CrashRecord:
    when, logged_host = _syslog_prefix(raw, mtime)
    host = options.host or logged_host or UNKNOWN_HOST
    details = report.details
    return CrashRecord(
        content_hash=log_content_hash(host, raw),
        source=source,
        path=str(path),
        host=host,
        kernel_release=details.kernel_release,
        build_id="",
        arch=_arch((r.name for r in details.registers), details.kernel_release),
        crash_time=when or mtime,
        title=report.title,
        alt_titles=report.alt_titles,
        signature=report.signature,
        kind=report.crash_type or "UNKNOWN",
        taints=details.taint_flags,
        guilty_frame=report.guilty_function or report.frame,
        guilty_file=report.guilty_file,
        excerpt=report.report[:_EXCERPT_MAX],
        corrupted=report.corrupted,
    )


# --- dumps -----------------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _triage(path: Path, cache_dir: Path | None) -> tuple[CrashReport, str]:
    # The report and the kernel's build-id (VMCOREINFO BUILD-ID, since Linux 5.9; "" before).
    # lazy: +560 ms CPU to import after this module (measured, loaded host)
    from kcrash.analysis import triage

    # lazy: +352 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.target import open_target

    try:
        with open_target(path, cache_dir) as prog:
            return triage.build_report(prog, str(path)), _build_id(prog.vmcoreinfo)
    except (FaultError, MissingDebugInfoError, ValidationError) as exc:  # symbols unreadable: the bare report
        # lazy: +90 ms CPU to import it after this module (measured, loaded host)
        from kcrash.dumps.registry import open_dump

        dump = open_dump(path)
        try:
            report = triage.build_bare_report(dump, str(path), str(exc))
            return report, _build_id(dump.vmcoreinfo_or_none())
        finally:
            dump.close()


def _build_id(info: VmcoreInfo | None) -> str:
    return (info.build_id or "") if info is not None else ""


def _oops_text(report: CrashReport) -> str:
    if report.oops is not None and report.oops.lines:
        return "\n".join(line.text for line in report.oops.lines)
    return "\n".join(line.text for line in report.log_tail[-40:])


def _dump_record(path: Path, options: ExtractOptions) -> CrashRecord:
    report, build_id = _triage(path, options.cache_dir)
    excerpt = _oops_text(report)
    oops = parse(excerpt)
    record = _dump_base(path, report, options, oops)
    json_text, html_text = _renderings(report, options.html)
    return replace(
        record, build_id=build_id, excerpt=excerpt[:_EXCERPT_MAX], report_json=json_text, report_html=html_text
    )


def _renderings(report: CrashReport, html: bool) -> tuple[str, str | None]:
    # lazy: +76 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.json import render_json

    if not html:
        return render_json(report), None
    # lazy: +74 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.html import render_html

    return render_json(report), render_html(report)


def _dump_time(path: Path, report: CrashReport) -> dt.datetime:
    seconds = report.system.crash_time
    if seconds is None and report.dump is not None:
        seconds = report.dump.collected
    if seconds is None:
        return _mtime(path)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def _dump_host(report: CrashReport, options: ExtractOptions) -> str:
    nodename = report.system.nodename
    return options.host or (nodename if nodename and nodename != "(none)" else UNKNOWN_HOST)


def _dump_base(path: Path, report: CrashReport, options: ExtractOptions, oops: OopsReport | None) -> CrashRecord:
    verdict, system = report.verdict, report.system
    title = verdict.title or (oops.title if oops else "") or verdict.panic_message or "unknown crash"
    return CrashRecord(
        content_hash=_file_sha256(path),
        source="dump",
        path=str(path),
        host=_dump_host(report, options),
        kernel_release=system.release,
        build_id="",
        arch=system.machine,
        crash_time=_dump_time(path, report),
        title=title,
        alt_titles=oops.alt_titles if oops else (),
        signature=verdict.signature or crash_signature(title, ()),
        kind=verdict.crash_type or (oops.crash_type if oops else "") or "UNKNOWN",
        taints=system.tainted.replace(" ", ""),
        guilty_frame=verdict.crashing_function or "",
        guilty_file=oops.guilty_file if oops else "",
        excerpt="",
        corrupted=verdict.corrupted,
    )
