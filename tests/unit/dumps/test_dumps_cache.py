"""kcrash.dumps._cache.LruCache: bounded, least recently used entry evicted first (a ``get``
refreshes an entry), hit/miss counters, capacity 0 caches nothing."""

from __future__ import annotations

from kcrash.dumps._cache import LruCache


def test_eviction_order_follows_use() -> None:
    cache: LruCache[int, str] = LruCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"  # 1 is now the most recently used
    cache.put(3, "c")  # evicts 2, not 1
    assert cache.get(2) is None
    assert (cache.get(1), cache.get(3)) == ("a", "c")
    assert len(cache) == 2


def test_put_refreshes_and_replaces() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("x", 1)
    cache.put("y", 2)
    cache.put("x", 10)  # replacing x makes it the newest
    cache.put("z", 3)
    assert (cache.get("x"), cache.get("y"), cache.get("z")) == (10, None, 3)


def test_counters_and_clear() -> None:
    cache: LruCache[int, bytes] = LruCache(4)
    cache.put(0, b"page")
    assert cache.get(0) == b"page"
    assert cache.get(1) is None
    assert cache.get(0) == b"page"
    assert (cache.hits, cache.misses) == (2, 1)
    cache.clear()
    assert len(cache) == 0 and cache.get(0) is None
    assert cache.misses == 2


def test_zero_or_negative_capacity_stores_nothing() -> None:
    for capacity in (0, -5):
        cache: LruCache[int, int] = LruCache(capacity)
        assert cache.capacity == 0
        cache.put(1, 1)
        assert len(cache) == 0 and cache.get(1) is None


def test_bounded_under_many_puts() -> None:
    cache: LruCache[int, int] = LruCache(100)
    for k in range(10_000):
        cache.put(k, k * k)
    assert len(cache) == 100
    assert cache.get(9_899) is None and cache.get(9_900) == 9_900 ** 2
