"""
kcrash.helpers.memo
===================

What a helper finds once per :class:`~kcrash.types.program.Program` (a per-CPU unit table, the SLUB
configuration, the page-flag decoder): :func:`per_program` keeps its builder's result for each
Program in ``prog.cache``, so it goes away with the Program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["per_program"]

_T = TypeVar("_T")


def per_program(build: Callable[[Program], _T]) -> Callable[[Program], _T]:
    """Make a builder run once per Program: later calls with that Program return the same result.

    The result lives in ``prog.cache`` under the builder's qualified name, so it goes away with the
    Program; a ``None`` result is not kept, and is built again. Use it as a decorator on a helper's
    private ``_something(prog)`` that reads what does not change during a session.

    :param build: called with the program when its result is not cached yet
    :return: the caching function, with ``build``'s name and docstring

    >>> @per_program
    ... def _task_type(prog):
    ...     return prog.type("struct task_struct")
    >>> _task_type(prog) is _task_type(prog)
    True
    """
    key = f"{build.__module__}.{build.__qualname__}"

    @functools.wraps(build)
    def get(prog: Program) -> _T:
        value: _T | None = prog.cache.get(key)
        if value is None:
            value = prog.cache[key] = build(prog)
        return value

    return get
