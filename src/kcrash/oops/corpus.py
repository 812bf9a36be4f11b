"""
kcrash.oops.corpus
==================

Reading the syzkaller-style golden corpus (``TITLE:``/``ALT:``/``TYPE:``/``CORRUPTED:``… headers, an
empty line, the raw log, an optional ``REPORT:`` section; and the ``FILE:``-headed guilty corpus) and
scoring the parser against it. The scores are computed from the headers on every run, never recorded.
The corpus layout and header meanings are in ``shared/reference/oops-reports.md`` §1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kcrash.errors import OopsParseError
from kcrash.oops.guilty import guilty_file
from kcrash.oops.model import OopsReport
from kcrash.oops.parser import contains_crash, parse

__all__ = [
    "CorpusCase",
    "CorpusScore",
    "GuiltyCase",
    "iter_guilty_cases",
    "iter_report_cases",
    "read_guilty_case",
    "read_report_case",
    "score_corpus",
]

_REPORTS_DIR: Final = "syzkaller-linux-reports"
_GUILTY_DIR: Final = "syzkaller-linux-guilty"
_LIST_KEYS: Final = frozenset({"ALT"})
#: ``GUILTY`` is a kcrash extension (own fixtures only): the expected
#: :attr:`~kcrash.oops.model.OopsReport.guilty_function`.
_KNOWN_KEYS: Final = frozenset({"TITLE", "ALT", "TYPE", "FRAME", "START", "END", "CORRUPTED", "SUPPRESSED",
                                "PANICKED", "EXECUTOR", "GUILTY"})


@dataclass(frozen=True, slots=True)
class CorpusCase:
    """One report test case: expected headers, the log and the optional expected report text."""

    name: str
    headers: dict[str, str]
    alt_titles: tuple[str, ...]
    log: str
    report: str | None

    def want(self, key: str, default: str = "") -> str:
        """The value of header ``key`` (``default`` when absent)."""
        return self.headers.get(key, default)


@dataclass(frozen=True, slots=True)
class GuiltyCase:
    """One guilty-file case: headers (``FILE``, maybe ``TITLE``) and the symbolized report."""

    name: str
    headers: dict[str, str]
    text: str
    raw: bool


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1").replace("\r", "")
    except OSError as exc:
        raise OopsParseError(f"{path}: {exc.strerror or exc}") from exc


def _add_header(line: str, headers: dict[str, str], alts: list[str], name: str) -> None:
    if line.startswith("#"):
        return
    key, sep, value = line.partition(": ")
    if not sep and line.endswith(":"):
        key, value = line[:-1], ""
    if key not in _KNOWN_KEYS:
        raise OopsParseError(f"{name}: unknown header line {line!r}")
    if key in _LIST_KEYS:
        alts.append(value)
    else:
        headers[key] = value


def read_report_case(path: Path, name: str | None = None) -> CorpusCase:
    """Parse one report case file (§1.2 of the reference)."""
    name = name or path.name
    headers: dict[str, str] = {}
    alts: list[str] = []
    lines = _read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines) and lines[i] != "":
        _add_header(lines[i], headers, alts, name)
        i += 1
    log: list[str] = []
    report: list[str] | None = None
    for j in range(i + 1, len(lines)):
        if report is None and lines[j] == "REPORT:" and lines[j - 1] == "" and j - 1 > i:
            report = []
        elif report is None:
            log.append(lines[j] + "\n")
        else:
            report.append(lines[j] + "\n")
    return CorpusCase(name, headers, tuple(sorted(alts)), "".join(log),
                      None if report is None else "".join(report))


def read_guilty_case(path: Path, name: str | None = None, raw: bool = False) -> GuiltyCase:
    """Parse one guilty case: ``KEY: value`` lines, a blank line, the report."""
    data = _read_text(path)
    head, sep, text = data.partition("\n\n")
    if not sep:
        raise OopsParseError(f"{path}: no blank line after the headers")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
    return GuiltyCase(name or path.name, headers, text, raw)


def _numbered(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.isdigit() and p.is_file()), key=lambda p: int(p.name))


def _find(root: Path, sub: str) -> Path | None:
    if (root / sub).is_dir():
        return root / sub
    return root if root.name == sub else None


def iter_report_cases(root: Path) -> Iterator[CorpusCase]:
    """Every report case under ``root`` (the corpus root or the reports folder itself)."""
    folder = _find(root, _REPORTS_DIR)
    if folder is None:
        folder = root if _find(root, _GUILTY_DIR) is None else None
    if folder is None:
        return
    for sub, prefix in ((folder, ""), (folder / "_all", "_all/"), (folder / "_symbolize", "_symbolize/")):
        for path in _numbered(sub):
            yield read_report_case(path, prefix + path.name)


def iter_guilty_cases(root: Path) -> Iterator[GuiltyCase]:
    """Every guilty case under ``root`` (the corpus root or the guilty folder itself)."""
    folder = _find(root, _GUILTY_DIR)
    if folder is None:
        return
    for path in _numbered(folder):
        if "FILE" in read_guilty_case(path).headers:
            yield read_guilty_case(path)
    for path in _numbered(folder / "_raw"):
        yield read_guilty_case(path, "_raw/" + path.name, raw=True)


@dataclass(slots=True)
class Metric:
    """Hits over cases for one compared field, with the names of the misses."""

    hits: int = 0
    total: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, ok: bool, name: str) -> None:
        """Count one case."""
        self.total += 1
        self.hits += ok
        if not ok:
            self.misses.append(name)

    @property
    def ratio(self) -> float:
        """hits / total (1.0 for an empty metric)."""
        return self.hits / self.total if self.total else 1.0


@dataclass(slots=True)
class CorpusScore:
    """All metrics of one corpus run, keyed by name (``detection``, ``title``, ``alt``…)."""

    metrics: dict[str, Metric] = field(default_factory=dict)

    def metric(self, name: str) -> Metric:
        """The metric called ``name`` (created on first use)."""
        return self.metrics.setdefault(name, Metric())


def _yn(value: bool) -> str:
    return "Y" if value else "N"


def _executor(rep: OopsReport | None) -> str:
    if rep is None or rep.executor is None:
        return ""
    return f"proc={rep.executor.proc}, id={rep.executor.id}"


def _score_case(case: CorpusCase, score: CorpusScore) -> None:
    rep = parse(case.log)
    expect = bool(case.want("TITLE"))
    score.metric("detection").add(contains_crash(case.log) == expect and (rep is not None) == expect, case.name)
    score.metric("title").add((rep.title if rep else "") == case.want("TITLE"), case.name)
    score.metric("alt").add((rep.alt_titles if rep else ()) == case.alt_titles, case.name)
    score.metric("type").add((rep.crash_type if rep else "") == case.want("TYPE"), case.name)
    score.metric("corrupted").add(_yn(rep.corrupted if rep else False) == case.want("CORRUPTED", "N"), case.name)
    score.metric("suppressed").add(_yn(rep.suppressed if rep else False) == case.want("SUPPRESSED", "N"),
                                   case.name)
    score.metric("panicked").add(_yn(rep.panicked if rep else False) == case.want("PANICKED", "N"), case.name)
    score.metric("executor").add(_executor(rep) == case.want("EXECUTOR"), case.name)
    if "FRAME" in case.headers:
        score.metric("frame").add((rep.frame if rep else "") == case.want("FRAME"), case.name)
    if case.report is not None and not case.name.startswith("_symbolize/"):
        score.metric("report").add(rep is not None and rep.report == case.report, case.name)


def guilty_of(case: GuiltyCase) -> str:
    """The guilty file kcrash finds for one guilty case."""
    if case.raw:
        return guilty_file(case.headers.get("TITLE", ""), case.text)
    rep = parse(case.text)
    if rep is None:
        return ""
    if not case.text.endswith(rep.report):
        return guilty_file(rep.title, case.text[rep.prefix_len:])
    return guilty_file(rep.title, rep.report[rep.prefix_len:])


def score_corpus(root: Path) -> CorpusScore:
    """Parse every case under ``root`` and compare with its headers."""
    if not root.is_dir():
        raise OopsParseError(f"{root}: not a corpus directory")
    score = CorpusScore()
    for case in iter_report_cases(root):
        _score_case(case, score)
    for gcase in iter_guilty_cases(root):
        score.metric("guilty").add(guilty_of(gcase) == gcase.headers.get("FILE", ""), gcase.name)
    return score
