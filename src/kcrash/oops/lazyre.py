"""
kcrash.oops.lazyre
==================

Regular expressions that cost nothing until a text could match them. Compiling is most of what parsing
one short log costs (the parser holds a few hundred expressions, and a log needs a dozen), so a
:class:`LazyPattern` is compiled on the first text that contains a literal every match must contain
(its *needles*, read off the pattern by :func:`required_literals`), and a text without them is answered
without compiling. :class:`Alternation` does the same for each alternative of a long ``|`` list (the
guilty-frame skip lists), indexed so that a short text is looked up, not searched ~300 times. Answers
are exactly those of the compiled expression; this module only decides *when* to compile.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

__all__ = ["Alternation", "LazyPattern", "required_literals"]

if TYPE_CHECKING:
    _MatchFn: TypeAlias = Callable[[str], re.Match[str] | None]
    _SubFn: TypeAlias = Callable[[str | Callable[[re.Match[str]], str], str], str]
    _FindallFn: TypeAlias = Callable[[str], list[Any]]

#: Characters with a meaning outside a character class (``]`` and ``}`` only end a run: conservative).
_SPECIAL: Final = frozenset("\\[]()|.^$*+?{}")
_MARK_SPECIAL: Final = str.maketrans(dict.fromkeys(_SPECIAL, "\0"))
_MARK_GROUP: Final = str.maketrans(dict.fromkeys("\\()[", "\0"))
#: Escapes whose next characters belong to them (hex, octal, named characters, group references).
_LONG_ESCAPES: Final = frozenset("xuUN0123456789")
_ASCII_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGITS: Final = frozenset("0123456789")
#: Inline flags (``(?i)``…), comments and conditionals: patterns using them get no needles.
_UNMODELLED_GROUPS: Final = frozenset("aiLmsux-#(")
#: Flags that change what a literal character matches (a plain int: RegexFlag arithmetic is slow).
_UNMODELLED_FLAGS: Final = int(re.IGNORECASE | re.VERBOSE)


def _class_end(pattern: str, i: int) -> int:
    # The index after the ``]`` closing the class that opens at ``pattern[i]`` (past the end if none).
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1
    while True:
        close = pattern.find("]", j)
        if close < 0:
            return len(pattern) + 1
        escape = pattern.find("\\", j, close)
        if escape < 0:
            return close + 1
        j = escape + 2


def _repeat_end(pattern: str, i: int) -> int:
    # The index after a ``{m,n}`` repeat starting at ``pattern[i]``, or -1 when ``{`` is a literal there.
    j = i + 1
    while j < len(pattern) and pattern[j] in _DIGITS:
        j += 1
    if pattern.startswith(",", j):
        j += 1
        while j < len(pattern) and pattern[j] in _DIGITS:
            j += 1
    if j == i + 1 or not pattern.startswith("}", j):
        return -1
    return j + 1


def _unmodelled_group(pattern: str, i: int) -> bool:
    # pattern[i] follows a "(": inline flags, a comment, a conditional or a named group reference.
    return pattern.startswith("?", i) and (pattern[i + 1:i + 2] in _UNMODELLED_GROUPS
                                           or pattern.startswith("P=", i + 1))


def _group_end(pattern: str, marked: str, i: int) -> int:
    # The index after the ")" closing the group whose "(" is at pattern[i - 1]; -1 when it is not closed
    # or holds a construct this scan does not model. Only \ ( ) [ matter inside a group: they are the
    # NULs of marked.
    if _unmodelled_group(pattern, i):
        return -1
    depth = 1
    while True:
        i = marked.find("\0", i)
        if i < 0:
            return -1
        ch = pattern[i]
        if ch == "\\":
            if pattern[i + 1:i + 2] in _LONG_ESCAPES:
                return -1
            i += 2
        elif ch == "[":
            i = _class_end(pattern, i)
        elif ch == ")":
            depth -= 1
            i += 1
            if not depth:
                return i
        else:
            i += 1
            if _unmodelled_group(pattern, i):
                return -1
            depth += 1


def _scan(pattern: str) -> list[tuple[str, str]] | None:
    # (branch, longest literal run at its top level) per top-level branch; None for unmodelled constructs.
    # A run is literal characters outside groups and classes (a quantifier takes back its character): every
    # match of the branch contains it. Runs are found with str.find on a copy whose specials are NULs.
    if "\0" in pattern:
        return None
    marked, size = pattern.translate(_MARK_SPECIAL), len(pattern)
    marked_group = ""
    out: list[tuple[str, str]] = []
    best = run = ""
    start = i = 0
    last_literal = False
    while i < size:
        end = marked.find("\0", i)
        if end != i:
            end = size if end < 0 else end
            run += pattern[i:end]
            last_literal = True
            i = end
            continue
        ch = pattern[i]
        i += 1
        if ch == "\\":
            nxt = pattern[i:i + 1]
            i += 1
            if not nxt or nxt in _LONG_ESCAPES:
                return None
            if nxt not in _ASCII_ALNUM:  # an escaped literal, not \d \w \b \n …
                run += nxt
                last_literal = True
                continue
        elif ch == "[":
            i = _class_end(pattern, i - 1)
        elif ch == "(":
            marked_group = marked_group or pattern.translate(_MARK_GROUP)
            i = _group_end(pattern, marked_group, i)
            if i < 0:
                return None
        elif ch == ")":
            return None
        elif ch in "*+?" or (ch == "{" and _repeat_end(pattern, i - 1) > 0):
            i = _repeat_end(pattern, i - 1) if ch == "{" else i
            if last_literal:
                run = run[:-1]
        elif ch == "|":
            out.append((pattern[start:i - 1], run if len(run) > len(best) else best))
            best = run = ""
            start, last_literal = i, False
            continue
        # Anything else (. ^ $, a class, a group, an escape, a repeat, a bare { ] }) ends the run.
        if len(run) > len(best):
            best = run
        run, last_literal = "", False
    if i > size:
        return None
    out.append((pattern[start:], run if len(run) > len(best) else best))
    return out


def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...]:
    """Strings such that every match of ``pattern`` contains one of them (one per top-level branch):
    a text containing none of them cannot match. ``()`` when the pattern gives no such set (a branch with
    no literal outside groups and classes, case-insensitive or verbose flags, inline flags)."""
    if int(flags) & _UNMODELLED_FLAGS:
        return ()
    if _SPECIAL.isdisjoint(pattern):
        return (pattern,) if pattern else ()
    branches = _scan(pattern)
    if branches is None or not all(needle for _, needle in branches):
        return ()
    return tuple(dict.fromkeys(needle for _, needle in branches))


_METHODS: Final = frozenset(("search", "match", "fullmatch", "sub", "findall", "found_in"))


class LazyPattern:
    """``re.compile(pattern, flags)``, compiled on the first text that contains one of its
    :func:`required_literals`. ``search``, ``match``, ``fullmatch``, ``sub`` and ``findall`` answer as
    the compiled pattern's do; once compiled they *are* its methods. ``found_in(text)`` is
    ``search(text) is not None``, and a plain substring test for a pattern without special characters
    (which is then never compiled). With ``prefilter=False`` the pattern is compiled on its first use: for
    patterns every report needs, or whose callers already test the literal (the scan would be wasted).
    ``needles`` gives the literals instead of reading them off the pattern, where the scan cannot see them
    (a character class that every match must use, such as ``[0-9]``)."""

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("findall", "flags", "found_in", "fullmatch", "match", "needles", "pattern", "search", "sub")
    search: _MatchFn
    match: _MatchFn
    fullmatch: _MatchFn
    sub: _SubFn
    findall: _FindallFn
    found_in: Callable[[str], bool]
    needles: tuple[str, ...]

    def __init__(self, pattern: str, flags: int = 0, *, prefilter: bool = True,
                 needles: tuple[str, ...] | None = None) -> None:
        self.pattern, self.flags = pattern, flags
        if not prefilter:
            self.needles = ()
        elif needles is not None:
            self.needles = needles

    def __getattr__(self, name: str) -> object:
        # Only reached while an attribute slot is unset, i.e. on the first use of each method.
        if name not in _METHODS:
            raise AttributeError(name)
        try:
            needles = self.needles
        except AttributeError:
            needles = self.needles = required_literals(self.pattern, self.flags)
        if name == "found_in":
            # Only a pattern without special characters is its own single needle.
            self.found_in = self._contained if needles == (self.pattern,) else self._found
        elif needles:
            self.search, self.match, self.fullmatch = self._search, self._match, self._fullmatch
            self.sub, self.findall = self._sub, self._findall
        else:
            self.compile()
        return getattr(self, name)

    def compile(self) -> re.Pattern[str]:
        """The compiled pattern (compiling it now if needed)."""
        compiled = re.compile(self.pattern, self.flags)
        self.search, self.match, self.fullmatch = compiled.search, compiled.match, compiled.fullmatch
        self.sub, self.findall = compiled.sub, compiled.findall
        return compiled

    def _contained(self, text: str) -> bool:
        return self.pattern in text

    def _found(self, text: str) -> bool:
        return self.search(text) is not None

    def _absent(self, text: str) -> bool:
        return all(needle not in text for needle in self.needles)

    def _search(self, text: str) -> re.Match[str] | None:
        return None if self._absent(text) else self.compile().search(text)

    def _match(self, text: str) -> re.Match[str] | None:
        return None if self._absent(text) else self.compile().match(text)

    def _fullmatch(self, text: str) -> re.Match[str] | None:
        return None if self._absent(text) else self.compile().fullmatch(text)

    def _sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        return text if self._absent(text) else self.compile().sub(repl, text)

    def _findall(self, text: str) -> list[Any]:
        return [] if self._absent(text) else self.compile().findall(text)


class Alternation:
    """``re.compile("|".join(alternatives), flags).search(text) is not None`` as :meth:`found_in`, for
    short texts such as function names: each alternative is a plain substring test or a
    :class:`LazyPattern` tried only where one of its needles occurs in the text."""

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_always", "_index", "_width", "alternatives", "flags")

    def __init__(self, alternatives: tuple[str, ...], flags: int = 0) -> None:
        self.alternatives, self.flags = alternatives, flags
        self._index: dict[str, list[tuple[str, LazyPattern | None]]] | None = None
        self._always: list[LazyPattern] = []
        self._width = 0

    def _keyed(self) -> list[tuple[str, LazyPattern | None]] | None:
        # (needle, None for a plain substring or the branch's pattern) for every top-level branch of every
        # alternative; branches without a needle go to _always. None when the alternatives cannot be
        # split into branches compiled one by one (the joined pattern is then searched as it is).
        if not self.alternatives or int(self.flags) & _UNMODELLED_FLAGS:
            return None
        keyed: list[tuple[str, LazyPattern | None]] = []
        for entry in self.alternatives:
            if entry and _SPECIAL.isdisjoint(entry):
                keyed.append((entry, None))
                continue
            branches = _scan(entry)
            if branches is None:
                return None
            for branch, needle in branches:
                if needle:
                    keyed.append((needle, None if needle == branch else LazyPattern(branch, self.flags)))
                else:
                    self._always.append(LazyPattern(branch, self.flags))
        return keyed

    def _build(self) -> dict[str, list[tuple[str, LazyPattern | None]]]:
        keyed = self._keyed()
        if keyed is None:
            keyed, self._always = [], [LazyPattern("|".join(self.alternatives), self.flags)]
        width = self._width = min((len(n) for n, _ in keyed), default=0)
        index: dict[str, list[tuple[str, LazyPattern | None]]] = {}
        for item in keyed:
            bucket = index.get(item[0][:width])
            if bucket is None:
                index[item[0][:width]] = [item]
            else:
                bucket.append(item)
        self._index = index
        return index

    def found_in(self, text: str) -> bool:
        """True when one of the alternatives matches somewhere in ``text``."""
        index = self._index if self._index is not None else self._build()
        width = self._width
        if index:
            for i in range(len(text) - width + 1):
                for needle, lazy in index.get(text[i:i + width], ()):
                    if text.startswith(needle, i) and (lazy is None or lazy.search(text) is not None):
                        return True
        return any(lazy.search(text) is not None for lazy in self._always)
