"""
kcrash.oops.demangle
====================

Just enough symbol demangling for frame names in oops text: Itanium C++ (``_Z8fakeNameiii`` →
``fakeName``, ``_ZN3foo3barEv`` → ``foo::bar``) and legacy Rust (``_ZN4core3fmt5write17h…E`` →
``core::fmt::write``), without parameters. Anything that does not decode cleanly is returned unchanged;
this is not a general demangler (no substitutions, templates are dropped).
"""

from __future__ import annotations

from typing import Final

from kcrash.oops.lazyre import LazyPattern

__all__ = ["demangle"]

_RUST_HASH: Final = LazyPattern(r"h[0-9a-f]{16}")
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


_BASIC: Final = {"a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
                  "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128", "s": "i16",
                  "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_"}
_B62: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _RustV0:
    # A small Rust v0 ("_R") demangler: paths, impls, backrefs and simple types; generics dropped.

    def __init__(self, sym: str) -> None:
        self.sym = sym
        self.pos = 0
        self.depth = 0

    def _peek(self) -> str:
        return self.sym[self.pos] if self.pos < len(self.sym) else ""

    def _next(self) -> str:
        ch = self._peek()
        if not ch:
            raise ValueError("truncated")
        self.pos += 1
        return ch

    def _base62(self) -> int:
        if self._peek() == "_":
            self.pos += 1
            return 0
        value = 0
        while (ch := self._next()) != "_":
            value = value * 62 + _B62.index(ch)
        return value + 1

    def _disambiguator(self) -> None:
        if self._peek() == "s":
            self.pos += 1
            self._base62()

    def _ident(self) -> str:
        self._disambiguator()
        if self._peek() == "u":
            self.pos += 1
        start = self.pos
        while self._peek().isdigit():
            self.pos += 1
        if start == self.pos:
            raise ValueError("no identifier")
        length = int(self.sym[start:self.pos])
        if self._peek() == "_":
            self.pos += 1
        text = self.sym[self.pos:self.pos + length]
        self.pos += length
        return text

    def _backref(self, parse: str) -> str:
        target = self._base62()
        saved, self.pos = self.pos, target
        self.depth += 1
        if self.depth > 50:
            raise ValueError("backref loop")
        out = self.path() if parse == "path" else self.type()
        self.depth -= 1
        self.pos = saved
        return out

    def path(self) -> str:
        tag = self._next()
        if tag == "C":
            return self._ident()
        if tag == "N":
            ns = self._next()
            inner = self.path()
            name = self._ident()
            if ns.isupper():
                return f"{inner}::{{{'closure' if ns == 'C' else 'shim'}}}"
            return f"{inner}::{name}" if name else inner
        if tag == "M":
            self._disambiguator()
            self.path()
            return f"<{self.type()}>"
        if tag == "X":
            self._disambiguator()
            self.path()
            ty = self.type()
            return f"<{ty} as {self.path()}>"
        if tag == "Y":
            ty = self.type()
            return f"<{ty} as {self.path()}>"
        if tag == "I":
            inner = self.path()
            while self._peek() != "E":
                self._generic_arg()
            self.pos += 1
            return inner
        if tag == "B":
            return self._backref("path")
        raise ValueError("bad path")

    def _generic_arg(self) -> None:
        if self._peek() == "L":
            self.pos += 1
            self._base62()
        elif self._peek() == "K":
            self.pos += 1
            self._const()
        else:
            self.type()

    def _const(self) -> None:
        if self._next() == "B":
            self._base62()
            return
        while self._next() != "_":
            pass

    def type(self) -> str:
        ch = self._peek()
        if ch in _BASIC:
            self.pos += 1
            return _BASIC[ch]
        if ch in "RQ":
            self.pos += 1
            if self._peek() == "L":
                self.pos += 1
                self._base62()
            return ("&mut " if ch == "Q" else "&") + self.type()
        if ch in "PO":
            self.pos += 1
            return ("*mut " if ch == "O" else "*const ") + self.type()
        if ch == "S":
            self.pos += 1
            return f"[{self.type()}]"
        if ch == "A":
            self.pos += 1
            inner = self.type()
            self._const()
            return f"[{inner}; _]"
        if ch == "T":
            self.pos += 1
            items = []
            while self._peek() != "E":
                items.append(self.type())
            self.pos += 1
            return "(" + ", ".join(items) + ")"
        if ch == "B":
            self.pos += 1
            return self._backref("type")
        return self.path()


def _rust_v0(name: str) -> str:
    body = name[2:]
    if body[:1].isdigit():
        while body[:1].isdigit():
            body = body[1:]
        body = body.lstrip("_")
    try:
        return _RustV0(body).path()
    except (ValueError, IndexError):
        return name


def demangle(name: str) -> str:
    """The demangled name without parameters, or ``name`` itself when it is not mangled."""
    if name.startswith("_R") and len(name) > 3:
        return _rust_v0(name)
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
