"""roost.mailstore.cache: the served-octets LRU, bounded in bytes."""

from __future__ import annotations

import threading

from roost.mailstore.cache import ByteLRU


def test_least_recently_used_go_first_within_the_budget() -> None:
    cache = ByteLRU(max_bytes=10, max_entry_bytes=8)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"  # a is now the most recent
    cache.put("c", b"cccc")  # 12 bytes: b goes
    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"
    assert cache.size_bytes == 8


def test_too_big_is_never_kept_and_replace_counts_once() -> None:
    cache = ByteLRU(max_bytes=100, max_entry_bytes=8)
    cache.put("big", b"x" * 9)
    assert cache.get("big") is None
    cache.put("k", b"1234")
    cache.put("k", b"123456")
    assert cache.size_bytes == 6
    cache.discard("k")
    cache.discard("missing")
    assert (len(cache), cache.size_bytes) == (0, 0)


def test_threads_keep_the_byte_count_exact() -> None:
    cache = ByteLRU(max_bytes=1000, max_entry_bytes=100)

    def worker(n: int) -> None:
        for i in range(500):
            cache.put((n, i % 37), bytes(i % 90))
            cache.get((n, (i * 7) % 37))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.size_bytes <= 1000
    keys = [(n, i) for n in range(4) for i in range(37)]
    assert cache.size_bytes == sum(len(cache.get(key) or b"") for key in keys)
