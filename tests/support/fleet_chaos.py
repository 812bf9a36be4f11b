"""Ingest tasks that misbehave on purpose, for the tests of :mod:`kcrash.fleet.ingest`'s retries.

:func:`die_once` is :func:`kcrash.fleet.extract.extract_file`, except that the worker process running it
dies (``os._exit``, as a kill or the OOM killer would end it) the first time it is given a file whose name
contains ``kill-me``. It remembers that it died in a ``<name>.died`` file next to the file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from kcrash.fleet.extract import ExtractOptions, FileResult, extract_file

__all__ = ["MARK", "always_die", "die_once", "died_flag"]

MARK = "kill-me"


def died_flag(path: str | Path) -> Path:
    """Where :func:`die_once` records that it died on ``path``."""
    path = Path(path)
    return path.parent.parent / f"{path.name}.died"


def die_once(path: str, options: ExtractOptions) -> FileResult:
    """:func:`extract_file`, but the process exits the first time it sees a marked file."""
    if MARK in Path(path).name and not died_flag(path).exists():
        died_flag(path).write_text(str(os.getpid()))
        os._exit(9)
    return extract_file(path, options)


def always_die(path: str, options: ExtractOptions) -> FileResult:
    """:func:`extract_file`, but the process exits every time it sees a marked file."""
    if MARK in Path(path).name:
        os._exit(9)
    return extract_file(path, options)
