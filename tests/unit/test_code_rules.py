"""Rules of issue 22 item 5 that a grep can check: no speed hacks on private interfaces."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kcrash"


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(SRC.rglob("*.py"))]


def test_no_private_interpreter_modules_or_gc_tuning() -> None:
    # CPython's private hash modules, gc.freeze()/threshold tuning and /proc/loadavg polling were
    # start-up and thread-count hacks; hashlib, the interpreter's defaults and the CPU count replace them.
    banned = re.compile(r"import _sha|[\"']_sha(?:2|256)[\"']|gc\.freeze|gc\.set_threshold|/proc/loadavg")
    found = [f"{p.relative_to(SRC)}: {m.group(0)}" for p, text in _sources() for m in banned.finditer(text)]
    assert found == []
