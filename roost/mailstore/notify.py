"""In-process news that a Maildir changed, for IMAP IDLE push.

Local delivery runs in a worker thread and writes with
``maildir.deliver``; right after that it calls ``notify_changed(path)``.
The ``Mailstore`` of the same process subscribes once, with its event
loop, and rescans the mailbox at once, so IDLE sessions see the new
message without waiting for their directory poll (which stays, for
programs outside the process).

``notify_changed`` may be called from any thread and never blocks: it
only schedules the subscriber on its loop with ``call_soon_threadsafe``.
Subscribers are held weakly, so a Mailstore that is dropped (tests make
many) leaves the registry by itself; one whose loop is closed is dropped
at the next notification.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

Callback = Callable[[Path], None]
_Entry = tuple["weakref.WeakMethod[Callback]", asyncio.AbstractEventLoop]


class Registry:
    """Subscribers and the notices to them; the process has one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[_Entry] = []

    def subscribe(self, callback: Callback, loop: asyncio.AbstractEventLoop) -> None:
        """Call the bound method ``callback(path)`` on ``loop`` for each
        notice.  It is held weakly, so it must be a bound method."""
        entry: _Entry = (weakref.WeakMethod(callback), loop)
        with self._lock:
            self._subscribers.append(entry)

    def notify_changed(self, maildir: Path) -> None:
        """Say that ``maildir`` (a Maildir or Maildir++ folder) has new or
        changed messages.  Safe from any thread; never blocks or raises."""
        with self._lock:
            current = list(self._subscribers)
        dead: list[_Entry] = []
        for entry in current:
            ref, loop = entry
            callback = ref()
            if callback is None or loop.is_closed():
                dead.append(entry)
                continue
            try:
                loop.call_soon_threadsafe(callback, maildir)
            except RuntimeError:  # the loop closed meanwhile
                dead.append(entry)
        if dead:
            with self._lock:
                self._subscribers = [e for e in self._subscribers if e not in dead]

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscribers)


registry = Registry()
subscribe = registry.subscribe
notify_changed = registry.notify_changed
