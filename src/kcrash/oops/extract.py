"""
kcrash.oops.extract
===================

From the text of one report to its raw title: try the formats of the matched oops group (earliest
match wins), fill the template with the regex captures and the guilty frames, and build the alternative
titles. Guilty frames come from the format's stack recipe (:class:`~kcrash.oops.patterns.StackSpec`), the
skip list, the syscall-prefix stripping and the stall/hung-task extractors. Where a format has a kcrash
``guilty`` recipe, the guilty *function* (the function at fault by the kernel's semantics, which may differ
from syzkaller's title frame) is extracted the same way. Normalisation of the result is done by
:mod:`kcrash.oops.title`; finding the report in a log is :mod:`kcrash.oops.parser`'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Final

from kcrash.oops.lazyre import Alternation, LazyPattern
from kcrash.oops.patterns import (
    CORRUPTED_LINE_RES,
    FRAME_RES,
    GLOBAL_SKIP,
    STACK_START_RES,
    STALL_ANCHORS,
    STRIP_FRAME_PREFIXES,
    OopsFormat,
    OopsGroup,
    Part,
    StackSpec,
    skip_alternation,
)

__all__ = ["NO_FRAMES", "Description", "extract_description"]

NO_FRAMES: Final = "extracted no frames"
_CORRUPTED: Final = "corrupted"
_FMT_ARG: Final = LazyPattern(r"\{(\d+)\}", 0)


class Description:
    """The raw (not yet normalised) title, alt titles, chosen format and corruption reason.

    ``guilty`` is the function from the format's ``guilty`` recipe (``""`` when the recipe found no
    frame), or ``None`` when the format has no such recipe and the title frame is the guilty function.
    (Records here are plain slotted classes, never changed once made: a dataclass costs ~0.4 ms of
    import per class.)
    """

    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("alt_titles", "corrupted_reason", "format", "guilty", "title")
    title: str
    alt_titles: tuple[str, ...]
    format: OopsFormat | None
    corrupted_reason: str
    guilty: str | None

    def __init__(self, title: str, alt_titles: tuple[str, ...], fmt: OopsFormat | None, corrupted_reason: str,
                 guilty: str | None = None) -> None:
        self.title, self.alt_titles, self.format = title, alt_titles, fmt
        self.corrupted_reason, self.guilty = corrupted_reason, guilty


class _KeyFrame:
    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("canonical", "raw")

    def __init__(self, canonical: str, raw: str) -> None:
        self.canonical, self.raw = canonical, raw


@functools.lru_cache(maxsize=1 << 14)
def _strip_frame(frame: str) -> str:
    best = frame
    for prefix in STRIP_FRAME_PREFIXES:
        if frame.startswith(prefix) and len(frame) - len(prefix) < len(best):
            best = frame[len(prefix):]
    return best


def _stall_extractor(frames: list[str]) -> tuple[str, int]:
    prev, prev_idx = frames[0], 0
    for i, frame in enumerate(frames):
        if STALL_ANCHORS.found_in(frame):
            if "smp_call_function" in frame:
                return "smp_call_function", i
            return prev, prev_idx
        prev, prev_idx = frame, i
    return "", -1


_HANG_ANCHORS: Final = (("rtnl_lock", ""), ("synchronize_rcu", "synchronize_rcu"),
                        ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
                        ("synchronize_sched", "synchronize_rcu"))
_HANG_SKIP: Final = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
                     "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier")


def _hang_extractor(frames: list[str]) -> tuple[str, int]:
    for i, frame in enumerate(frames):
        for anchor, replacement in _HANG_ANCHORS:
            if anchor in frame:
                return replacement or frame, i
    for i, frame in enumerate(frames):
        if not any(s in frame for s in _HANG_SKIP):
            return frame, i
    return "", -1


_EXTRACTORS: Final[dict[str, Callable[[list[str]], tuple[str, int]]]] = {
    "stall": _stall_extractor, "hang": _hang_extractor}


def _key_frame(raw: list[str], spec: StackSpec) -> _KeyFrame:
    if not raw:
        return _KeyFrame("", "")
    stripped = [_strip_frame(f) for f in raw]
    if not spec.extractor:
        return _KeyFrame(stripped[0], raw[0])
    frame, idx = _EXTRACTORS[spec.extractor](stripped)
    return _KeyFrame(frame, raw[idx]) if frame else _KeyFrame("", "")


_MAX_MEMO: Final = 1 << 15
_MANGLED: Final = ("_Z", "_R")


class _NameFilter:
    # A recipe's skip lists plus a memo of their verdicts: the demangled frame name, or None when a
    # list hides it.
    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("extra", "global_skip", "kept")

    def __init__(self, global_skip: bool, extra: Alternation | None) -> None:
        self.global_skip, self.extra = global_skip, extra
        self.kept: dict[str, str | None] = {}

    def name(self, raw: str) -> str | None:
        try:
            return self.kept[raw]
        except KeyError:
            pass
        name, skipped = _demangled(raw)
        hidden = (self.global_skip and skipped) or (self.extra is not None and self.extra.found_in(name))
        kept = None if hidden else name
        if len(self.kept) < _MAX_MEMO:
            self.kept[raw] = kept
        return kept


@functools.lru_cache(maxsize=_MAX_MEMO)
def _demangled(raw: str) -> tuple[str, bool]:
    # The demangled name and whether the global skip list hides it, shared by every recipe. Only
    # "_Z"/"_R" names are mangled (demangle returns any other name as it is): the demangler is loaded
    # for the first of them.
    if raw.startswith(_MANGLED):
        # lazy: +3 ms CPU to import it after this module (measured, loaded host)
        from kcrash.oops.demangle import demangle

        name = demangle(raw)
    else:
        name = raw
    return name, GLOBAL_SKIP.found_in(name)


@functools.lru_cache(maxsize=256)
def _name_filter(extra: tuple[str, ...], global_skip: bool) -> _NameFilter:
    # skip_alternation(extra, True) searched as two lists: an alternation matches somewhere iff one
    # of its branches does, so the global list is looked up once per name for every recipe.
    # An empty list without the global one matches everything (the empty regex), as before.
    return _NameFilter(global_skip, skip_alternation(extra, False) if extra or not global_skip else None)


def _append_frames(frames: list[str], groups: tuple[str | None, ...] | None, names: _NameFilter) -> None:
    if groups is None:
        return
    for group in groups:
        if group is None:
            continue
        name = names.name(group)
        if name is not None:
            frames.append(name)


# The stack-start patterns as one alternation (none has a top-level "|", so no group is needed around
# each): its needles are theirs, and the frame lines of a stack hold none of them.
_STACK_START_ANY: Final = LazyPattern("|".join(r.pattern for r in STACK_START_RES), re.ASCII)


def _corrupted_line(line: str) -> bool:
    return "should_fail" in line and any(r.found_in(line) for r in CORRUPTED_LINE_RES)


@functools.lru_cache(maxsize=1 << 15)
def _stack_line(line: str) -> tuple[bool, tuple[str | None, ...] | None]:
    # (starts another stack, captures of the first frame regex that matches it) of one report line,
    # memoised: every report of a log walks the lines after it, and logs repeat frame lines a lot.
    if _STACK_START_ANY.found_in(line):
        return True, None
    for frame_re in FRAME_RES:
        m = frame_re.search(line)
        if m is not None:
            return False, m.groups()
    return False, None


class _Walker:
    # Walks the lines of a report through the parts of a stack recipe.

    def __init__(self, lines: list[str], spec: StackSpec, parts: tuple[Part, ...]) -> None:
        self.lines, self.spec, self.parts = lines, spec, parts
        self.names = _name_filter(spec.skip, spec.global_skip)
        self.pos = 0
        self.raw: list[str] = []
        self.ok = True

    def run(self) -> list[_KeyFrame]:
        results: list[_KeyFrame] = []
        idx, stacks = 0, 0
        while True:
            if idx == len(self.parts) or (self.parts[idx] is None and stacks > 0):
                results.append(self._flush())
            if idx == len(self.parts):
                return results
            part = self.parts[idx]
            if part is None:
                stacks += 1
                idx = self._stack(idx)
            else:
                self._regex(part)
            idx += 1

    def _flush(self) -> _KeyFrame:
        key = _key_frame(self.raw, self.spec)
        self.raw = []
        if not key.canonical:
            self.ok = False
            return _KeyFrame(_CORRUPTED, _CORRUPTED)
        return key

    def _regex(self, part: LazyPattern) -> None:
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            if _corrupted_line(line):
                self.ok = False
                return
            m = part.search(line)
            if m is not None:
                _append_frames(self.raw, m.groups(), self.names)
                return

    def _stack(self, idx: int) -> int:
        nxt = self.parts[idx + 1] if idx + 1 < len(self.parts) else None
        while self.pos < len(self.lines):
            line = self.lines[self.pos]
            self.pos += 1
            if _corrupted_line(line):
                self.ok = False
                return idx
            starts, frame = _stack_line(line)
            if starts:
                return idx
            if nxt is not None:
                m = nxt.search(line)
                if m is not None:
                    _append_frames(self.raw, m.groups(), self.names)
                    return idx + 1
            _append_frames(self.raw, frame, self.names)
        return idx


def _extract_frames(spec: StackSpec, text: str) -> tuple[list[_KeyFrame], bool]:
    lines = text.split("\n")
    walker = _Walker(lines, spec, spec.parts)
    frames = walker.run()
    if walker.ok or not spec.parts2:
        return frames, walker.ok
    walker = _Walker(lines, spec, spec.parts2)
    frames = walker.run()
    return frames, walker.ok


def _guilty_function(spec: StackSpec, text: str) -> str:
    # The first frame of a guilty recipe; "" when it finds none (never the "corrupted" placeholder).
    walker = _Walker(text.split("\n"), spec, spec.parts)
    frames = walker.run()
    return frames[0].canonical if walker.ok and frames else ""


def _render(template: str, args: Sequence[str]) -> str:
    def arg(m: re.Match[str]) -> str:
        i = int(m.group(1)) - 1
        return args[i] if 0 <= i < len(args) else ""

    return _FMT_ARG.sub(arg, template)


def _partial_args(prefix: list[str], frames: list[_KeyFrame]) -> list[list[str]]:
    # The raw frames, then each syscall prefix removed where at least one frame starts with it.
    out = [prefix + [f.raw for f in frames]]
    for strip in STRIP_FRAME_PREFIXES:
        if any(f.raw.startswith(strip) for f in frames):
            out.append(prefix + [f.raw.removeprefix(strip) for f in frames])
    return out


def _titles(fmt: OopsFormat, prefix: list[str], frames: list[_KeyFrame]) -> tuple[str, list[str]]:
    args = prefix + [f.canonical for f in frames]
    title = _render(fmt.fmt, args)
    alts = [_render(a, args) for a in fmt.alt]
    for variant in _partial_args(prefix, frames):
        alt_title = _render(fmt.fmt, variant)
        if alt_title != title:
            alts.append(alt_title)
        alts.extend(_render(a, variant) for a in fmt.alt)
    return title, alts


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class _State:
    # The best format so far while the formats of a group are tried.

    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("corrupted", "fmt", "guilty", "matched_title", "start", "title")

    def __init__(self) -> None:
        self.title = self.corrupted = ""
        self.fmt: OopsFormat | None = None
        self.start = -1
        self.matched_title = False
        self.guilty: str | None = None


def _try_format(text: str, fmt: OopsFormat, st: _State, alts: list[str]) -> None:
    m = fmt.title.search(text)
    if m is None or (st.start >= 0 and m.start() > st.start):
        return
    if m.start() == st.start and st.title:
        return
    if st.start < 0 or m.start() < st.start:
        st.title, st.fmt, st.start = "", None, m.start()
    st.matched_title = True
    if fmt.report is not None:
        m = fmt.report.search(text)
        if m is None:
            return
    prefix = [g or "" for g in m.groups()]
    frames: list[_KeyFrame] = []
    st.corrupted = ""
    if fmt.stack is not None:
        frames, ok = _extract_frames(fmt.stack, text[m.start():])
        if not ok:
            st.corrupted = NO_FRAMES
    st.title, new_alts = _titles(fmt, prefix, frames)
    alts[:] = _unique(alts + new_alts)
    st.fmt = fmt
    st.guilty = None if fmt.guilty is None else _guilty_function(fmt.guilty, text[m.start():])


def _fallback_title(text: str, group: OopsGroup) -> str:
    pos = text.find(group.header)
    if pos < 0:
        return ""
    end = text.find("\n", pos)
    return text[pos:] if end < 0 else text[pos:end]


def extract_description(text: str, group: OopsGroup) -> Description:
    """Title, alt titles and format for ``text`` (the stripped report) and the matched ``group``."""
    st = _State()
    alts: list[str] = []
    for fmt in group.formats:
        _try_format(text, fmt, st, alts)
    if not st.title:
        reason = "matched title but not report regexp" if st.matched_title else st.corrupted
        return Description(_fallback_title(text, group), tuple(alts), None, reason)
    if not st.corrupted and st.fmt is not None and st.fmt.corrupted:
        st.corrupted = "report format is marked as corrupted"
    return Description(st.title, tuple(alts), st.fmt, st.corrupted, st.guilty)
