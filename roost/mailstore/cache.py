"""A process-wide cache of served message octets, bounded in bytes.

A Maildir file never changes its content (flags live in its name), so the
octets as served (CRLF) can be kept under a key that names the file: the
mailbox directory and the message's base name.  The IMAP service answers
a FETCH whose data is all cached on the event loop, without a thread hop
and without touching the disk; misses are read in a worker thread and
put here.  Least recently used entries go first once the byte budget is
spent; one message larger than ``max_entry_bytes`` is never kept.

Thread-safe: worker threads put, the loop gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class ByteLRU:
    """Bytes values under hashable keys, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int, max_entry_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_entry_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._entries[key] = value
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                _key, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# 64 MiB holds about 13,000 messages of 5 KB; a message over 1 MiB is
# read from disk each time (it costs more to send than to read).
SERVED = ByteLRU(max_bytes=64 * 1024 * 1024, max_entry_bytes=1024 * 1024)
