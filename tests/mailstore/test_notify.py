"""roost.mailstore.notify: deliveries in a worker thread wake the loop's
Mailstore, which rescans the mailbox so IDLE sessions hear of new mail
without their directory poll (RFC 2177)."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

from roost.mailstore import notify
from roost.mailstore.maildir import deliver, mailbox_path
from roost.mailstore.store import Mailstore, create_user


class _Settings:
    def __init__(self, root: Path) -> None:
        self.mailbox_directory = root


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, int]] = []
        self.done = asyncio.Event()

    def changed(self, path: Path) -> None:
        self.calls.append((path, threading.get_ident()))
        self.done.set()


def test_notice_from_a_thread_runs_on_the_loop() -> None:
    registry = notify.Registry()

    async def scenario() -> None:
        recorder = _Recorder()
        registry.subscribe(recorder.changed, asyncio.get_running_loop())
        path = Path("/nowhere/Maildir")
        await asyncio.to_thread(registry.notify_changed, path)
        await asyncio.wait_for(recorder.done.wait(), 10)
        assert recorder.calls == [(path, threading.get_ident())]

    asyncio.run(scenario())


def test_dropped_subscribers_and_closed_loops_leave_the_registry() -> None:
    registry = notify.Registry()
    loop = asyncio.new_event_loop()
    recorder = _Recorder()
    registry.subscribe(recorder.changed, loop)
    gone = _Recorder()
    registry.subscribe(gone.changed, loop)
    del gone
    gc.collect()
    registry.notify_changed(Path("/x"))  # drops the dead one, never raises
    assert len(registry) == 1
    loop.close()  # the notice to recorder was never run: its loop is gone
    registry.notify_changed(Path("/x"))
    assert len(registry) == 0
    assert recorder.calls == []


def test_delivery_notice_reaches_an_open_view(tmp_path: Path) -> None:
    create_user(_Settings(tmp_path), "alice")
    maildir = mailbox_path(tmp_path, "alice")

    async def scenario() -> None:
        store = Mailstore(tmp_path)
        inbox = await store.user("alice").mailbox("INBOX")
        view = inbox.open_view(False)
        assert view.drain(True) == []

        def local_delivery() -> None:
            # what roost.delivery.local does, in its worker thread
            deliver(maildir, b"Subject: pushed\n\nhello\n")
            notify.notify_changed(maildir)

        await asyncio.to_thread(local_delivery)
        # no refresh() here: only the notice can make the view change
        await asyncio.wait_for(view.changed.wait(), 10)
        assert view.drain(True) == [("EXISTS", 1, 0), ("RECENT", 1, 0)]

    asyncio.run(scenario())
