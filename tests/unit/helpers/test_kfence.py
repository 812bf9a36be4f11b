"""KFENCE on the synthetic SLUB kernel (tests/support/slab_kernel.py): the pool's extent from
__kfence_pool and the validated kfence_metadata entries (a static array, or since v6.6 a pointer to
one), each object's address, size, cache and state, guard pages, and a pool that is off (NULL)."""

from __future__ import annotations

import pytest

from kcrash.helpers.linux.kfence import KfenceObject, kfence_object, kfence_pool
from support.slab_kernel import PAGE, PAGE_OFFSET, build


@pytest.mark.parametrize("pointer", [False, True], ids=["array", "pointer"])
def test_pool_and_objects(pointer: bool) -> None:
    k, small, big = build()
    pool = PAGE_OFFSET + 6 * PAGE
    first, second, third = pool + 2 * PAGE + 100, pool + 4 * PAGE, pool + 6 * PAGE
    k.kfence(6, [(first, 1, small), (second, 2, big), (third, 0, 0)], pointer=pointer)
    assert kfence_pool(k.prog) == (pool, pool + 4 * 2 * PAGE)
    assert kfence_object(k.prog, first + 5) == KfenceObject(0, first, 48, small, True)
    assert kfence_object(k.prog, pool + 4 * PAGE + 4000) == KfenceObject(1, second, 48, big, False)
    assert kfence_object(k.prog, third) == KfenceObject(2, third, 48, 0, False)
    for guard in (pool, pool + PAGE, pool + 3 * PAGE, pool + 5 * PAGE):
        assert kfence_object(k.prog, guard) is None
    assert kfence_object(k.prog, pool + 8 * PAGE) is None  # past the pool


def test_kfence_off() -> None:
    k, _, _ = build()  # __kfence_pool is NULL, as Debian boots its kernels
    assert kfence_pool(k.prog) is None and kfence_object(k.prog, PAGE_OFFSET + 2 * PAGE) is None
