"""Slowing down password guessing.

`AuthThrottle` counts failed logins per key (a client IP, and
separately an account name, as case 015 asks) and answers how long the
service should wait before it replies to the next attempt: nothing for
the first few failures, then a delay that doubles with each further
failure up to a ceiling. A success clears the key; a key that has been
quiet for `forget_after_s` starts afresh. Memory is bounded: past
`max_keys` the least recently failed keys are forgotten.

The throttle only computes delays; the service sleeps (with
`asyncio.sleep`, so other sessions go on), which keeps this class free
of I/O and testable with a fake clock.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    last_failure: float


class AuthThrottle:
    """Per-key failure counter giving exponential back-off delays."""

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay_s: float = 1.0,
        max_delay_s: float = 15.0,
        forget_after_s: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.max_keys = max_keys
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _record(self, key: str) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if self._clock() - record.last_failure > self.forget_after_s:
            del self._records[key]
            return None
        return record

    def failures(self, key: str) -> int:
        """Failures counted for key (0 once forgotten)."""
        record = self._record(key)
        return record.failures if record else 0

    def delay_s(self, *keys: str) -> float:
        """Seconds to wait before answering an attempt involving keys.

        With several keys (IP and account) the largest delay applies.
        """
        return max((self._delay(self.failures(k)) for k in keys), default=0.0)

    def _delay(self, failures: int) -> float:
        extra = failures - self.free_failures
        if extra < 0:
            return 0.0
        # cap the exponent too, so a long attack cannot overflow a float
        return min(self.base_delay_s * 2.0 ** min(extra, 32), self.max_delay_s)

    def record_failure(self, *keys: str) -> None:
        now = self._clock()
        for key in keys:
            record = self._record(key)
            if record is None:
                record = _Record(0, now)
                self._records[key] = record
            record.failures += 1
            record.last_failure = now
            self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def record_success(self, *keys: str) -> None:
        for key in keys:
            self._records.pop(key, None)
