"""Queue ids: short, unique, time-ordered, free of look-alike characters.

An id is ten characters from a 30-letter alphabet with no 0/O, 1/I/L or U
(so it reads back from a log or a bounce without ambiguity): six encode the
second since 2024-01-01 UTC, four a sub-second sequence.  Within a process
each id is strictly greater than the last, so ids sort by arrival; ids of
different processes (the server, `sendmail`) can only collide inside the same
second, which the spool detects when it links the file into place.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_BASE = len(ALPHABET)
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
_SECOND_DIGITS = 6
_SEQUENCE_DIGITS = 4
_SEQUENCE_SPAN = _BASE**_SEQUENCE_DIGITS
ID_LENGTH = _SECOND_DIGITS + _SEQUENCE_DIGITS


def _encode(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def is_queue_id(text: str) -> bool:
    """True when text has the shape of a queue id (safe as a file name)."""
    return len(text) == ID_LENGTH and all(c in ALPHABET for c in text)


class QueueIdSource:
    """Hands out increasing queue ids; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last = 0
        # Start each second at a random offset so that two processes
        # asking in the same second rarely meet.
        self._rng = random.Random()  # noqa: S311 - not a secret, only spread

    def next(self) -> str:
        now = self._clock()
        second = max(0, int(now) - _EPOCH)
        with self._lock:
            floor = second * _SEQUENCE_SPAN
            if self._last < floor:
                spread = self._rng.randrange(_SEQUENCE_SPAN // 2)
                self._last = floor + spread
            else:
                self._last += 1
            value = self._last
        return _encode(value, ID_LENGTH)


_default = QueueIdSource()


def new_queue_id() -> str:
    """A fresh queue id from the process-wide source."""
    return _default.next()
