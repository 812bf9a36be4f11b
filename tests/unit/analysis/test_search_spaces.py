"""analysis.search (test_search.py is memory.search's): the canonical halves; task_page_tables refusals."""

from __future__ import annotations

import pytest

from kcrash.analysis.search import kernel_half, task_page_tables, user_half
from kcrash.errors import KcrashError
from support.task_kernel import Kernel


@pytest.mark.parametrize(("levels", "user_top", "kernel_start"), [(4, 1 << 47, 0xFFFF800000000000),
                                                                  (5, 1 << 56, 0xFF00000000000000)])
def test_halves(levels: int, user_top: int, kernel_start: int) -> None:
    assert user_half(levels) == (0, user_top)
    assert kernel_half(levels) == (kernel_start, 1 << 64)


def test_task_page_tables_needs_kernel_page_tables() -> None:
    # a program over bare virtual segments (no dump, no page tables) cannot reach mm->pgd
    k = Kernel()
    with pytest.raises(KcrashError, match="no kernel page tables"):
        task_page_tables(k.prog, 1)
