from __future__ import annotations

import gc
from typing import Any

from kcrash.helpers.memo import per_program


class _Prog:
    # stands for a Program: its per-program cache (drgn's prog.cache)
    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}


def test_built_once_per_program_and_dropped_with_it() -> None:
    calls: list[Any] = []

    @per_program
    def build(prog: Any) -> list[Any]:
        calls.append(prog)
        return [len(calls)]

    a, b = _Prog(), _Prog()
    assert build(a) is build(a)
    assert build(b) == [2]
    assert calls == [a, b]
    assert build.__name__ == "build"
    assert [value for key, value in b.cache.items() if key.endswith(".build")] == [[2]]  # kept in prog.cache
    del a
    gc.collect()
    assert build(b) == [2] and len(calls) == 2


def test_none_is_built_again() -> None:
    calls: list[int] = []

    @per_program
    def build(prog: Any) -> None:
        calls.append(1)

    prog = _Prog()
    build(prog)
    build(prog)
    assert calls == [1, 1]
