"""Lazily compiled patterns (:mod:`kcrash.oops.lazyre`): the literal prefilter never hides a match, the
skip lists answer exactly as their joined regexes, and the parser compiles nothing until a log needs it."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcrash.oops import checks, details, extract, guilty, lazyre, lines, patterns, title
from kcrash.oops.lazyre import Alternation, LazyPattern, required_literals
from kcrash.oops.signature import sha256_hex

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "oops" / "x86_64"


def _module_patterns() -> Iterator[LazyPattern]:
    for module in (patterns, checks, details, extract, guilty, lines, title):
        for value in vars(module).values():
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                for obj in item if isinstance(item, tuple) else (item,):
                    if isinstance(obj, LazyPattern):
                        yield obj


def _specs() -> Iterator[patterns.StackSpec]:
    for group in patterns.OOPS_GROUPS:
        for fmt in group.formats:
            yield from (spec for spec in (fmt.stack, fmt.guilty) if spec is not None)


def _table_patterns() -> list[LazyPattern]:
    found: dict[int, LazyPattern] = {id(p): p for p in _module_patterns()}
    for group in patterns.OOPS_GROUPS:
        found.update((id(p), p) for p in group.suppressions)
        for fmt in group.formats:
            found.update((id(p), p) for p in (fmt.title, fmt.report) if p is not None)
    for spec in _specs():
        found.update((id(p), p) for p in spec.parts + spec.parts2 if p is not None)
    return sorted(found.values(), key=lambda p: p.pattern)


def _needles(lazy: LazyPattern) -> tuple[str, ...]:
    lazy.found_in("")  # the first use settles the needles
    return lazy.needles


_ALL = _table_patterns()
_FILTERED = [p for p in _ALL if _needles(p)]


def test_the_tables_are_covered() -> None:
    # The walk above must see the tables (~270 distinct patterns), most of them with needles.
    assert len(_ALL) > 250
    assert len(_FILTERED) > 200


@pytest.mark.parametrize(("pattern", "flags", "expected"), [
    ("abc", 0, ("abc",)),
    ("", 0, ()),
    ("a|b", 0, ("a", "b")),
    ("a|", 0, ()),  # an empty branch matches anywhere
    ("ab?c", 0, ("a",)),  # the quantified "b" is taken back; "a" and "c" are both required
    (r"a\.b", 0, ("a.b",)),
    (r"\d+abc", 0, ("abc",)),
    ("x(abc)y", 0, ("x",)),  # group contents are not looked into
    ("a{2}b", 0, ("b",)),
    ("a{b", 0, ("a",)),  # "{" not starting a repeat is a literal, conservatively a run break
    ("a{,3}bc", 0, ("bc",)),
    ("[]x]yz|[^]q]rs", 0, ("yz", "rs")),
    (r"ab\]cd", 0, ("ab]cd",)),
    (r"foo\nbar", 0, ("foo",)),
    ("_trap$|do_trap", re.ASCII, ("_trap", "do_trap")),
    ("(read|write)_once_.*nocheck", 0, ("nocheck",)),
    ("abc", re.IGNORECASE, ()),
    ("(?i)abc", 0, ()),
    ("(?#c)abc", 0, ()),
    (r"(a)\1bc", 0, ()),
    (r"\x41bc", 0, ()),
    ("ab[cd", 0, ()),
    ("a(b", 0, ()),
    ("a)b", 0, ()),
    ("ab\\", 0, ()),
])
def test_required_literals(pattern: str, flags: int, expected: tuple[str, ...]) -> None:
    assert required_literals(pattern, flags) == expected


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
@pytest.mark.parametrize("lazy", _FILTERED, ids=lambda p: p.pattern[:60])
def test_every_match_holds_a_needle(lazy: LazyPattern, data: st.DataObject) -> None:
    compiled = re.compile(lazy.pattern, lazy.flags)
    text = data.draw(st.from_regex(compiled))
    assert compiled.search(text) is not None
    assert any(n in text for n in _needles(lazy)), (lazy.pattern, text)


def test_stack_start_alternation_keeps_one_branch_per_pattern() -> None:
    # extract._STACK_START_ANY joins the stack-start patterns without groups: that is their alternation
    # only while none of them has a top-level "|".
    branches = lazyre._scan(extract._STACK_START_ANY.pattern)
    assert branches is not None
    assert [b for b, _ in branches] == [r.pattern for r in patterns.STACK_START_RES]
    assert all(needle for _, needle in branches)


_TEXTS = ["", "abc", "xx abc1 yy", "abc123abc4", "no match here", "ABC1", "abc\nabc2\n"]


@pytest.mark.parametrize("pattern", [r"abc(\d)", "abc", r"(\d+)", r"^abc\d$", "x|abc"])
def test_methods_answer_as_the_compiled_pattern(pattern: str) -> None:
    compiled = re.compile(pattern, re.ASCII)
    for text in _TEXTS:
        m, want = LazyPattern(pattern, re.ASCII).search(text), compiled.search(text)
        assert (m and (m.span(), m.groups())) == (want and (want.span(), want.groups()))
        m, want = LazyPattern(pattern, re.ASCII).match(text), compiled.match(text)
        assert (m.span() if m else None) == (want.span() if want else None)
        m, want = LazyPattern(pattern, re.ASCII).fullmatch(text), compiled.fullmatch(text)
        assert (m.span() if m else None) == (want.span() if want else None)
        assert LazyPattern(pattern, re.ASCII).sub("<\\g<0>>", text) == compiled.sub("<\\g<0>>", text)
        assert LazyPattern(pattern, re.ASCII).findall(text) == compiled.findall(text)
        assert LazyPattern(pattern, re.ASCII).found_in(text) == (compiled.search(text) is not None)


def test_compiled_only_when_a_needle_shows_up() -> None:
    lazy = LazyPattern(r"abc(\d)", re.ASCII)
    assert lazy.search("nothing") is None
    assert not isinstance(getattr(lazy.search, "__self__", None), re.Pattern)
    assert lazy.search("abc1") is not None
    assert isinstance(getattr(lazy.search, "__self__", None), re.Pattern)
    literal = LazyPattern("Kernel panic")
    assert literal.found_in("x Kernel panic y") and not literal.found_in("kernel panic")
    assert not isinstance(getattr(literal.search, "__self__", None), re.Pattern)
    eager = LazyPattern(r"\d", prefilter=False)
    assert eager.found_in("x") is False
    assert isinstance(getattr(eager.search, "__self__", None), re.Pattern)


def _skip_lists() -> list[tuple[tuple[str, ...], Alternation]]:
    # (the alternatives of each skip list, the Alternation the parser uses for them) for every list.
    global_skip = patterns._GLOBAL_SKIP + patterns._KCRASH_SKIP
    lists = {global_skip: patterns.GLOBAL_SKIP}
    for spec in _specs():
        lists[spec.skip] = patterns.skip_alternation(spec.skip, False)
        lists[global_skip + spec.skip] = patterns.skip_alternation(spec.skip, True)
    lists[patterns.STALL_ANCHORS.alternatives] = patterns.STALL_ANCHORS
    lists[guilty._FILE_IGNORE.alternatives] = guilty._FILE_IGNORE
    return list(lists.items())


def _words() -> list[str]:
    text = "\n".join(p.read_text(encoding="latin-1") for p in sorted(FIXTURES.glob("*.txt")))
    found = set(re.findall(r"[A-Za-z0-9_.$:/-]+", text))
    found |= {"down", "mutex_lock", "_trap", "do_trap", "my_trap_x", "readl", "readlx", "crc32", "iput",
              "iput_final", "__die", "die", "die_body", "rb_next", "x_rb_next", "lib/foo.c", "mm/slab.c",
              "mm/slob.c", "arch/x86/kernel/traps.c", "fs/ext4/inode.c", "include/linux/list.h", ""}
    return sorted(found)


_SKIP_LISTS = _skip_lists()


@pytest.mark.parametrize(("alternatives", "alternation"), _SKIP_LISTS,
                         ids=[f"{len(alts)}:{'|'.join(alts)[:40]}" for alts, _ in _SKIP_LISTS])
def test_skip_lists_answer_as_the_joined_regex(alternatives: tuple[str, ...], alternation: Alternation) -> None:
    joined = re.compile("|".join(alternatives), re.ASCII)
    for word in _words():
        assert alternation.found_in(word) == (joined.search(word) is not None), word


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_global_skip_list_on_generated_names(data: st.DataObject) -> None:
    alternatives = patterns._GLOBAL_SKIP + patterns._KCRASH_SKIP
    joined = re.compile("|".join(alternatives), re.ASCII)
    branch = data.draw(st.sampled_from(alternatives))
    name = data.draw(st.one_of(st.from_regex(re.compile(branch, re.ASCII)), st.text(max_size=30)))
    assert patterns.GLOBAL_SKIP.found_in(name) == (joined.search(name) is not None), name


@pytest.mark.parametrize("alternatives", [(), ("",), ("(?i)ABC", "x"), ("a(", "|b)"), ("[ab", "c]"), ("k",)])
def test_alternation_edge_cases(alternatives: tuple[str, ...]) -> None:
    joined = re.compile("|".join(alternatives))
    alternation = Alternation(alternatives)
    for text in ("", "abc", "xyz", "c]", "a|b)", "k", "|"):
        assert alternation.found_in(text) == (joined.search(text) is not None), (alternatives, text)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_printk_stamp_fast_path_agrees_with_the_full_pattern(data: st.DataObject) -> None:
    full = re.compile(lines._PRINTK_NO_LOGIN_RE.pattern, re.ASCII)
    prefix = data.draw(st.one_of(st.from_regex(full), st.sampled_from(["[  12.5] ", "[1.2][  C3] ", "<6>[1.0] ",
                                                                       "** 2 printk messages dropped ** [3.4] "])))
    line = prefix + data.draw(st.text(max_size=20))
    want = full.match(line)
    got = lines._PRINTK_STAMP_RE.match(line) or lines._PRINTK_NO_LOGIN_RE.match(line)
    assert (got and (got.span(), got.group(1))) == (want and (want.span(), want.group(1))), line


def test_sha256_hex_is_hashlib_sha256() -> None:
    for data in (b"", b"abc", bytes(range(256)) * 5):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


_COUNT_COMPILES = """
import re, sys
compiled = []
_compile = re._compile
def counting(pattern, flags):
    # Only the patterns kcrash compiles (standard modules loaded on the way compile their own).
    if "/kcrash/" in sys._getframe(2).f_code.co_filename:
        compiled.append(pattern)
    return _compile(pattern, flags)
re._compile = counting
import kcrash.oops
at_import = list(compiled)
log = open(sys.argv[1], encoding="latin-1").read().split("\\n\\n", 1)[1]
assert kcrash.oops.parse(log) is not None
print(len(at_import), len(compiled) - len(at_import))
from kcrash.oops import patterns
print(int("|".join(patterns._GLOBAL_SKIP + patterns._KCRASH_SKIP) in compiled))
"""


def test_import_compiles_nothing_and_a_parse_compiles_little() -> None:
    # Start-up cost: importing the parser compiles no pattern, and parsing one oops compiles the few it
    # needs (about twenty), never the ~250-entry global skip list as one regex.
    out = subprocess.run([sys.executable, "-c", _COUNT_COMPILES, str(FIXTURES / "001.txt")], capture_output=True,
                         text=True, check=True).stdout.split()
    at_import, at_parse, joined_skip = map(int, out)
    assert at_import == 0
    assert 0 < at_parse <= 30
    assert joined_skip == 0
