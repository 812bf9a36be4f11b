"""
kcrash.oops.demangle
====================

Just enough symbol demangling for frame names in oops text: Itanium C++ (``_Z8fakeNameiii`` →
``fakeName``, ``_ZN3foo3barEv`` → ``foo::bar``) and legacy Rust (``_ZN4core3fmt5write17h…E`` →
``core::fmt::write``), without parameters. Anything that does not decode cleanly is returned unchanged;
this is not a general demangler (no substitutions, templates are dropped).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["demangle"]

_RUST_HASH: Final = re.compile(r"h[0-9a-f]{16}")
_CV: Final = frozenset("rVKRO")


def _source_name(sym: str, pos: int) -> tuple[str, int] | None:
    # <source-name> ::= <positive length number> <identifier>
    end = pos
    while end < len(sym) and sym[end].isdigit():
        end += 1
    if end == pos:
        return None
    length = int(sym[pos:end])
    if length <= 0 or end + length > len(sym):
        return None
    return sym[end:end + length], end + length


def _skip_template(sym: str, pos: int) -> int:
    # Skip a balanced I...E template argument list; returns the position after it.
    depth = 0
    while pos < len(sym):
        ch = sym[pos]
        if ch == "I":
            depth += 1
        elif ch == "E":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return pos


def _nested(sym: str, pos: int) -> list[str] | None:
    parts: list[str] = []
    while pos < len(sym) and sym[pos] in _CV:
        pos += 1
    if sym.startswith("St", pos):
        parts.append("std")
        pos += 2
    while pos < len(sym) and sym[pos] != "E":
        if sym[pos] == "I":
            pos = _skip_template(sym, pos)
            continue
        if sym[pos] in "CD" and pos + 1 < len(sym) and sym[pos + 1].isdigit():
            parts.append(("~" if sym[pos] == "D" else "") + (parts[-1] if parts else ""))
            pos += 2
            continue
        got = _source_name(sym, pos)
        if got is None:
            return None
        parts.append(got[0])
        pos = got[1]
    return parts if parts and pos < len(sym) else None


def demangle(name: str) -> str:
    """The demangled name without parameters, or ``name`` itself when it is not mangled."""
    if not name.startswith("_Z") or len(name) < 4:
        return name
    if name[2] == "N":
        parts = _nested(name, 3)
        if parts is None:
            return name
        if len(parts) > 1 and _RUST_HASH.fullmatch(parts[-1]):
            parts = parts[:-1]
        return "::".join(parts)
    if name.startswith("St", 2):
        got = _source_name(name, 4)
        return f"std::{got[0]}" if got else name
    got = _source_name(name, 2)
    return got[0] if got else name
