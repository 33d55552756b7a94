"""The queue manager: delivers what is in the spool, retries, bounces.

How it works.  Every message id is in one of three places: the ready
queue (deliver now), the deferred table (deliver at a time), or nowhere
(held, or being delivered).  New mail enters the ready queue the moment
`Spool.enqueue` returns (a listener); `sendmail` mail is picked up from
the maildrop when the socket says "wakeup" and on a one-second poll.  A
fixed number of worker tasks take ids from the ready queue and make one
delivery attempt each; disk work runs in threads.

One attempt reads the queue file and its state, delivers every pending
recipient (local ones through LocalDelivery, others through the remote
transport, or deferred with "no outbound transport" when there is none),
then, in this order: enqueues forwarded copies and DSNs (durably), and
only then records progress in the state file or removes the message.
A crash between a mailbox write and the state update is repaired at the
next start: every message found in the queue then is "recovered", and
its first attempt looks in each Maildir for the copy it may already
have written (the copy's name carries the queue id), so local delivery
happens exactly once.

Deferred recipients are retried after minimal_backoff_time, doubling per
attempt up to maximal_backoff_time; a message older than
maximal_queue_lifetime (bounce_queue_lifetime for null-sender mail) is
bounced with the last reason.  delay_warning_time sends one delay DSN.

Speed.  A message enqueued by this process is handed over in memory
(`Spool.add_message_listener`), so its first attempt does not read the
queue file back.  Attempts run in the manager's own thread pool (one
thread per worker), not asyncio's default executor, so mailbox fsyncs
never queue behind (or hold up) smtpd's lookups, and concurrent
deliveries' fsyncs share the file system's journal commits.

Removal after the last recipient is done unlinks the queue file in the
delivery pool, without fsyncing the directory (as postfix's qmgr does):
the next enqueue's directory fsync, or the kernel's own commit a few
seconds later, makes it durable, and an enqueue (in the spool's writer
thread) never waits behind a removal.  A crash before that brings the
message back: local copies are then found in the Maildir and not
written twice (the recovery check above), while remote recipients get
the message a second time.  SMTP allows that (RFC 5321 6.1 asks for no
loss; receivers cope with duplicates), and postfix makes the same trade.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from roost.config.settings import Settings
from roost.queue import bounce
from roost.queue.control import OPERATIONS, apply_to_files
from roost.queue.envelope import Envelope, QueueFileError, Recipient
from roost.queue.pickup import pick_up
from roost.queue.queueid import is_queue_id
from roost.queue.result import (
    BOUNCED,
    DEFERRED,
    SENT,
    RecipientResult,
    format_delay,
)
from roost.queue.spool import QueueState, Spool

log = logging.getLogger("roost.queue")

_PICKUP_POLL_S = 1.0
# Messages handed over in memory at enqueue, kept until their first
# attempt; beyond this many bytes they are read back from the queue file.
_FRESH_MAX_BYTES = 64 * 1024 * 1024
_CONTROL_LINE_MAX = 1024 * 1024


class LocalOutcomeLike(Protocol):
    @property
    def result(self) -> RecipientResult: ...
    @property
    def forwards(self) -> tuple[str, ...]: ...
    @property
    def delivered_users(self) -> tuple[str, ...]: ...


class LocalTransport(Protocol):
    """What the queue needs of roost.delivery.local.LocalDelivery."""

    def is_local(self, address: str) -> bool: ...

    def deliver(
        self,
        envelope: Envelope,
        data: bytes,
        address: str,
        *,
        skip_users: Sequence[str] = (),
        check_duplicates: bool = False,
        attempt_start: float | None = None,
    ) -> LocalOutcomeLike: ...


# remote(envelope, data, recipients) -> one result per recipient, in order
RemoteTransport = Callable[
    [Envelope, bytes, list[Recipient]], Awaitable[list[RecipientResult]]
]


def backoff_s(attempts: int, settings: Settings) -> float:
    """Wait after the attempts-th failed attempt: doubling, clamped."""
    low = settings.minimal_backoff_time
    high = settings.maximal_backoff_time
    return float(min(high, low * 2 ** max(0, attempts - 1)))


def lifetime_s(envelope: Envelope, settings: Settings) -> int:
    """How long a message may stay queued before it bounces."""
    if envelope.mail_from == "":
        return settings.bounce_queue_lifetime
    return settings.maximal_queue_lifetime


@dataclass(slots=True)
class _Attempt:
    """The results of one attempt, by recipient index."""

    results: dict[int, RecipientResult]
    forwards: dict[int, tuple[str, ...]]
    delivered_users: list[str]
    went_remote: bool = False


class QueueManager:
    """Delivers queued mail; `start()` it once, `stop()` it at shutdown."""

    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        local: LocalTransport,
        *,
        remote: RemoteTransport | None = None,
        clock: Callable[[], float] = time.time,
        concurrency: int = 20,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.local = local
        self.remote = remote
        self.clock = clock
        self.concurrency = concurrency
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._deferred: dict[str, float] = {}
        self._active: set[str] = set()
        self._pending_ops: dict[str, str] = {}
        self._recovered: set[str] = set()
        self._timer_changed = asyncio.Event()
        self._pickup_now = asyncio.Event()
        # pickup and postsuper both move maildrop files: one at a time
        self._maildrop_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._idle = asyncio.Event()
        self._fresh: dict[str, tuple[Envelope, bytes]] = {}
        self._fresh_bytes = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- life cycle --------------------------------------------------------

    async def start(self, *, workers: bool = True) -> None:
        """Lock the queue, recover after a crash, and begin delivering.

        Raises TimeoutError when another server holds the queue.  With
        workers=False nothing is delivered by itself (tests drive
        `deliver_message`).
        """
        self._lock_fd = await asyncio.to_thread(self.spool.lock)
        await asyncio.to_thread(self.spool.recover)
        ids = await asyncio.to_thread(self.spool.queue_ids)
        self._recovered = set(ids)
        states = await asyncio.to_thread(
            lambda: {i: self.spool.read_state(i) for i in ids}
        )
        for queue_id, state in states.items():
            if not state.hold:
                self._schedule(queue_id, state.next_attempt)
        self.spool.add_message_listener(self._keep_fresh)
        self.spool.add_listener(self.wake)
        await self._start_control()
        # Before any delivery: a maildrop file whose message is already
        # queued (crash before the unlink) must be recognised, not queued
        # again after that message has gone.
        await self.pickup()
        if workers:
            self._tasks.append(asyncio.create_task(self._timer_loop()))
            self._tasks.append(asyncio.create_task(self._pickup_loop()))
            for _ in range(self.concurrency):
                self._tasks.append(asyncio.create_task(self._worker()))
        log.info("queue manager started: %d message(s) in the queue", len(ids))

    async def stop(self) -> None:
        """Stop taking new work; attempts in progress are abandoned safely."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.spool.socket_path)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._executor is not None:
            # attempts still running in it finish by themselves
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._lock_fd is not None:
            self.spool.unlock(self._lock_fd)
            self._lock_fd = None

    async def _in_pool(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run blocking delivery work in the manager's own threads."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max(1, self.concurrency), thread_name_prefix="roost-deliver"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(func, *args)
        )

    def _keep_fresh(self, envelope: Envelope, data: bytes) -> None:
        """Keep a just-enqueued message for its first attempt."""
        if self._fresh_bytes + len(data) > _FRESH_MAX_BYTES:
            return
        copy = dataclasses.replace(envelope, recipients=list(envelope.recipients))
        self._fresh[envelope.queue_id] = (copy, data)
        self._fresh_bytes += len(data)

    def _take_fresh(self, queue_id: str) -> tuple[Envelope, bytes] | None:
        fresh = self._fresh.pop(queue_id, None)
        if fresh is not None:
            self._fresh_bytes -= len(fresh[1])
        return fresh

    def wake(self, queue_id: str) -> None:
        """Deliver queue_id now (the spool calls this after each enqueue)."""
        self._schedule(queue_id, 0.0)

    def _schedule(self, queue_id: str, when: float) -> None:
        if queue_id in self._active:
            # Looked at again when the attempt in progress ends.
            self._deferred[queue_id] = when
        elif when <= self.clock():
            self._deferred.pop(queue_id, None)
            if queue_id not in self._queued:
                self._queued.add(queue_id)
                self._ready.put_nowait(queue_id)
        else:
            self._deferred[queue_id] = when
            self._timer_changed.set()

    def _unschedule(self, queue_id: str) -> None:
        self._take_fresh(queue_id)
        self._deferred.pop(queue_id, None)
        self._queued.discard(queue_id)

    def flush(self, domain: str | None = None) -> int:
        """Retry deferred mail now (all of it, or for one domain)."""
        chosen = list(self._deferred)
        if domain is not None:
            chosen = [q for q in chosen if self._has_domain(q, domain)]
        for queue_id in chosen:
            self._schedule(queue_id, 0.0)
        return len(chosen)

    def _has_domain(self, queue_id: str, domain: str) -> bool:
        try:
            envelope = self.spool.read_envelope(queue_id)
        except (OSError, QueueFileError):
            return False
        suffix = "@" + domain.lower().rstrip(".")
        return any(r.address.lower().endswith(suffix) for r in envelope.recipients)

    @property
    def active_ids(self) -> frozenset[str]:
        return frozenset(self._active | self._queued)

    async def wait_idle(self) -> None:
        """Wait until nothing is ready or being delivered (tests, shutdown)."""
        while self._queued or self._active or not self._ready.empty():
            self._idle.clear()
            await self._idle.wait()

    # -- loops -------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            queue_id = await self._ready.get()
            self._queued.discard(queue_id)
            try:
                await self.deliver_message(queue_id)
            except Exception:
                # Our bug: keep the message, retry later, keep serving.
                log.exception("%s: delivery attempt failed", queue_id)
                self._schedule(queue_id, self.clock() + backoff_s(1, self.settings))
            finally:
                if not self._queued and not self._active:
                    self._idle.set()

    async def _timer_loop(self) -> None:
        while True:
            now = self.clock()
            waiting = {q: t for q, t in self._deferred.items() if q not in self._active}
            for queue_id, when in waiting.items():
                if when <= now:
                    self._schedule(queue_id, 0.0)
            upcoming = min((t for t in waiting.values() if t > now), default=None)
            timeout = None if upcoming is None else max(0.0, upcoming - now)
            self._timer_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), timeout)

    async def _pickup_loop(self) -> None:
        while True:
            await self.pickup()
            self._pickup_now.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pickup_now.wait(), _PICKUP_POLL_S)

    # -- the maildrop ------------------------------------------------------

    async def pickup(self) -> list[str]:
        """Move every maildrop file into the queue; returns the queue ids."""
        names = await asyncio.to_thread(self.spool.maildrop_names)
        picked = []
        for name in names:
            try:
                async with self._maildrop_lock:
                    queue_id = await asyncio.to_thread(self._pickup_one, name)
            except OSError as exc:
                log.warning("maildrop %s: cannot pick up: %s", name, exc)
                continue
            if queue_id is not None:
                picked.append(queue_id)
                self.wake(queue_id)
        return picked

    def _pickup_one(self, name: str) -> str | None:
        return pick_up(
            self.spool, name, myhostname=self.settings.myhostname, now=self.clock()
        )

    # -- one attempt -------------------------------------------------------

    async def deliver_message(self, queue_id: str) -> None:
        """Make one delivery attempt for queue_id (see the module note)."""
        if queue_id in self._active:
            # an attempt or a postsuper operation has it: look again after
            self._deferred.setdefault(queue_id, self.clock())
            return
        self._active.add(queue_id)
        try:
            await self._attempt(queue_id)
        finally:
            await self._release(queue_id)

    async def _release(self, queue_id: str) -> None:
        """End an attempt or operation on queue_id: apply the postsuper
        operation that waited for it, then its schedule takes over."""
        operation = self._pending_ops.pop(queue_id, None)
        try:
            if operation is not None:
                await self._apply(operation, queue_id)
        finally:
            self._active.discard(queue_id)
            when = self._deferred.get(queue_id)
            if when is not None:
                self._schedule(queue_id, when)
            if not self._queued and not self._active:
                self._idle.set()

    async def _attempt(self, queue_id: str) -> None:
        fresh = self._take_fresh(queue_id)
        try:
            if fresh is not None and queue_id not in self._recovered:
                # just enqueued, untouched since: no state file yet
                envelope, data = fresh
                state = QueueState()
            else:
                envelope, data, state = await self._in_pool(self._load, queue_id)
        except FileNotFoundError:
            return
        except QueueFileError as exc:
            log.error("%s: unreadable queue file: %s", queue_id, exc)
            return
        if state.hold:
            return
        if state.attempts == 0 and queue_id not in self._recovered:
            log.info(
                "%s: from=<%s>, size=%d, nrcpt=%d (queue active)",
                queue_id,
                envelope.mail_from,
                envelope.size,
                len(envelope.recipients),
            )
        start = self.clock()
        recovered = queue_id in self._recovered
        self._recovered.discard(queue_id)
        pending = [i for i in range(len(envelope.recipients)) if i not in state.done]
        attempt = await self._deliver(envelope, data, state, pending, start, recovered)
        await self._finish(queue_id, envelope, data, state, attempt)

    def _load(self, queue_id: str) -> tuple[Envelope, bytes, QueueState]:
        envelope, data = self.spool.read(queue_id)
        return envelope, data, self.spool.read_state(queue_id)

    async def _deliver(
        self,
        envelope: Envelope,
        data: bytes,
        state: QueueState,
        pending: list[int],
        start: float,
        recovered: bool,
    ) -> _Attempt:
        attempt = _Attempt({}, {}, [])
        local_ids = [
            i for i in pending if self.local.is_local(envelope.recipients[i].address)
        ]
        remote_ids = [i for i in pending if i not in set(local_ids)]
        if local_ids:
            await self._in_pool(
                self._deliver_local,
                envelope,
                data,
                state,
                local_ids,
                start,
                recovered,
                attempt,
            )
        if remote_ids:
            attempt.went_remote = True
            await self._deliver_remote(envelope, data, remote_ids, start, attempt)
        return attempt

    def _deliver_local(
        self,
        envelope: Envelope,
        data: bytes,
        state: QueueState,
        indexes: list[int],
        start: float,
        recovered: bool,
        attempt: _Attempt,
    ) -> None:
        skip = list(state.delivered_users)
        for index in indexes:
            address = envelope.recipients[index].address
            outcome = self.local.deliver(
                envelope,
                data,
                address,
                skip_users=skip,
                check_duplicates=recovered,
                attempt_start=start,
            )
            attempt.results[index] = outcome.result
            skip.extend(outcome.delivered_users)
            attempt.delivered_users.extend(outcome.delivered_users)
            if outcome.forwards and outcome.result.status != DEFERRED:
                attempt.forwards[index] = outcome.forwards

    async def _deliver_remote(
        self,
        envelope: Envelope,
        data: bytes,
        indexes: list[int],
        start: float,
        attempt: _Attempt,
    ) -> None:
        recipients = [envelope.recipients[i] for i in indexes]
        if self.remote is None:
            results = [
                RecipientResult.deferred(r.address, "no outbound transport", "4.3.0")
                for r in recipients
            ]
            for result in results:
                self._log_result(envelope, result, start, relay="none")
        else:
            try:
                results = await self.remote(envelope, data, recipients)
            except Exception:
                log.exception("%s: outbound transport failed", envelope.queue_id)
                results = [
                    RecipientResult.deferred(r.address, "outbound transport error")
                    for r in recipients
                ]
        for index, result in zip(indexes, results, strict=False):
            attempt.results[index] = result

    def _log_result(
        self, envelope: Envelope, result: RecipientResult, start: float, relay: str
    ) -> None:
        now = self.clock()
        log.info(
            "%s: to=<%s>, relay=%s, delay=%s, delays=0/%s/0/%s, dsn=%s, status=%s (%s)",
            envelope.queue_id,
            result.address,
            relay,
            format_delay(now - envelope.arrival_time),
            format_delay(start - envelope.arrival_time),
            format_delay(now - start),
            result.dsn,
            result.status,
            result.reason,
        )

    # -- after the attempt -------------------------------------------------

    async def _finish(
        self,
        queue_id: str,
        envelope: Envelope,
        data: bytes,
        state: QueueState,
        attempt: _Attempt,
    ) -> None:
        now = self.clock()
        failed: list[bounce.Notice] = []
        succeeded: list[bounce.Notice] = []
        for index, result in attempt.results.items():
            recipient = envelope.recipients[index]
            if result.status == SENT:
                state.done[index] = SENT
                state.reasons.pop(index, None)
                if recipient.wants("SUCCESS"):
                    succeeded.append(bounce.Notice(recipient, result))
            elif result.status == BOUNCED:
                state.done[index] = BOUNCED
                state.reasons.pop(index, None)
                failed.append(bounce.Notice(recipient, result))
            else:
                state.reasons[index] = result.reason
        state.delivered_users = sorted(
            set(state.delivered_users) | set(attempt.delivered_users)
        )

        pending = [i for i in range(len(envelope.recipients)) if i not in state.done]
        age = now - envelope.arrival_time
        if pending and (
            state.forced_expire or age >= lifetime_s(envelope, self.settings)
        ):
            failed.extend(self._expire(envelope, state, attempt, pending))
            pending = []

        await self._forward(envelope, data, attempt.forwards)
        await self._notify(envelope, data, failed, bounce.FAILED)
        await self._notify(envelope, data, succeeded, bounce.DELIVERED)

        if not pending:
            # In this pool, not the spool's writer thread: a new message's
            # enqueue never waits behind a removal.  No directory fsync:
            # see the module note.
            remove = functools.partial(
                self.spool.remove_now, queue_id, fsync_directory=False
            )
            await self._in_pool(remove)
            self._unschedule(queue_id)
            log.info("%s: removed", queue_id)
            return

        state.attempts += 1
        state.next_attempt = now + backoff_s(state.attempts, self.settings)
        await self._warn_delay(envelope, data, state, pending, attempt, age)
        await self.spool.write_state(queue_id, state)
        self._schedule(queue_id, state.next_attempt)

    def _expire(
        self,
        envelope: Envelope,
        state: QueueState,
        attempt: _Attempt,
        pending: list[int],
    ) -> list[bounce.Notice]:
        notices = []
        for index in pending:
            recipient = envelope.recipients[index]
            last = attempt.results.get(index)
            reason = state.reasons.get(index, "delivery time expired")
            dsn = last.dsn if last is not None else "4.4.7"
            result = RecipientResult(
                recipient.address,
                BOUNCED,
                dsn,
                reason,
                diagnostic=last.diagnostic if last is not None else "",
                remote_mta=last.remote_mta if last is not None else "",
            )
            state.done[index] = BOUNCED
            notices.append(bounce.Notice(recipient, result))
        log.info(
            "%s: from=<%s>, status=expired, returned to sender",
            envelope.queue_id,
            envelope.mail_from,
        )
        return notices

    async def _forward(
        self, envelope: Envelope, data: bytes, forwards: dict[int, tuple[str, ...]]
    ) -> None:
        for index, addresses in forwards.items():
            alias = envelope.recipients[index].address
            copy = Envelope(
                mail_from=envelope.mail_from,  # RFC 5321 4.5.5: <> stays <>
                recipients=[Recipient(a) for a in addresses],
                arrival_time=self.clock(),
                body_type=envelope.body_type,
                smtputf8=envelope.smtputf8,
                kind=envelope.kind,
            )
            header = f"Delivered-To: {alias}\r\n".encode("utf-8", "surrogateescape")
            new_id = await self.spool.enqueue(copy, header + data)
            log.info(
                "%s: to=<%s>, relay=local, dsn=2.0.0, status=sent (forwarded as %s)",
                envelope.queue_id,
                alias,
                new_id,
            )

    async def _notify(
        self,
        envelope: Envelope,
        data: bytes,
        notices: list[bounce.Notice],
        action: str,
    ) -> None:
        if not notices:
            return
        kind = "FAILURE" if action == bounce.FAILED else "SUCCESS"
        if action == bounce.DELAYED:
            kind = "DELAY"
        wanted = [n for n in notices if n.recipient.wants(kind)]
        if not wanted:
            return
        if envelope.mail_from == "":
            await self._double_bounce(envelope, data, wanted, action)
            return
        dsn_envelope, message = bounce.make_dsn(
            envelope=envelope,
            data=data,
            notices=wanted,
            action=action,
            myhostname=self.settings.myhostname,
            now=self.clock(),
        )
        new_id = await self.spool.enqueue(dsn_envelope, message)
        label = {
            bounce.FAILED: "non-delivery",
            bounce.DELAYED: "delay",
            bounce.DELIVERED: "success",
        }[action]
        log.info("%s: sender %s notification: %s", envelope.queue_id, label, new_id)

    async def _double_bounce(
        self,
        envelope: Envelope,
        data: bytes,
        notices: list[bounce.Notice],
        action: str,
    ) -> None:
        # RFC 5321 6.1: never a DSN to the null sender.  Only when one of
        # our own bounces fails does the postmaster hear of it, once.
        if action != bounce.FAILED or envelope.kind != "bounce":
            log.info(
                "%s: null sender, no notification sent (%s)",
                envelope.queue_id,
                notices[0].result.reason,
            )
            return
        to = self.settings.double_bounce_notice_recipient
        if "@" not in to:
            to = f"{to}@{self.settings.myorigin}"
        dsn_envelope, message = bounce.make_dsn(
            envelope=envelope,
            data=data,
            notices=notices,
            action=action,
            myhostname=self.settings.myhostname,
            to=to,
            kind="2bounce",
            now=self.clock(),
        )
        new_id = await self.spool.enqueue(dsn_envelope, message)
        log.info(
            "%s: postmaster non-delivery notification: %s", envelope.queue_id, new_id
        )

    async def _warn_delay(
        self,
        envelope: Envelope,
        data: bytes,
        state: QueueState,
        pending: list[int],
        attempt: _Attempt,
        age: float,
    ) -> None:
        threshold = self.settings.delay_warning_time
        if not threshold or state.warned or age < threshold or envelope.kind:
            return
        state.warned = True
        if envelope.mail_from == "":
            return
        notices = []
        for index in pending:
            recipient = envelope.recipients[index]
            result = attempt.results.get(index) or RecipientResult.deferred(
                recipient.address, state.reasons.get(index, "delivery delayed")
            )
            notices.append(bounce.Notice(recipient, result))
        await self._notify(envelope, data, notices, bounce.DELAYED)

    # -- postsuper and postqueue ------------------------------------------

    async def operate(self, operation: str, ids: list[str]) -> int:
        """delete / hold / release / requeue ids; returns how many changed."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation}")
        count = 0
        for queue_id in ids:
            if not is_queue_id(queue_id):
                continue
            if queue_id in self._active:
                self._pending_ops[queue_id] = operation
                count += 1
                continue
            # Active while the files change: a worker that takes it from
            # the ready queue meanwhile leaves it for afterwards.
            self._active.add(queue_id)
            try:
                if await self._apply(operation, queue_id):
                    count += 1
            finally:
                await self._release(queue_id)
        return count

    async def _apply(self, operation: str, queue_id: str) -> bool:
        self._take_fresh(queue_id)  # the files are the truth from now on
        async with self._maildrop_lock:
            changed = await asyncio.to_thread(
                apply_to_files,
                self.spool,
                operation,
                queue_id,
                myhostname=self.settings.myhostname,
                now=self.clock(),
            )
        if changed is None:
            return False
        queue_id = changed
        if operation in ("delete", "hold"):
            self._unschedule(queue_id)
            verb = "removed" if operation == "delete" else "placed on hold"
            log.info("%s: %s", queue_id, verb)
        else:
            self._schedule(queue_id, 0.0)
            verb = "released from hold" if operation == "release" else "requeued"
            log.info("%s: %s", queue_id, verb)
        return True

    # -- the control socket ------------------------------------------------

    async def _start_control(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool.socket_path)
        self._server = await asyncio.start_unix_server(
            self._on_control,
            path=str(self.spool.socket_path),
            limit=_CONTROL_LINE_MAX,
        )
        os.chmod(self.spool.socket_path, 0o600)

    async def _on_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            try:
                reply = await self._control(json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["cmd"]
        if command == "wakeup":
            self._pickup_now.set()
            return {"ok": True, "count": 0}
        if command == "flush":
            self._pickup_now.set()
            return {"ok": True, "count": self.flush(request.get("domain"))}
        if command == "deliver":
            self._pickup_now.set()
            ids = [i for i in request["ids"] if i in self._deferred]
            for queue_id in ids:
                self._schedule(queue_id, 0.0)
            return {"ok": True, "count": len(ids)}
        if command == "active":
            return {"ok": True, "ids": sorted(self.active_ids)}
        if command in OPERATIONS:
            ids = [str(i) for i in request["ids"]]
            return {"ok": True, "count": await self.operate(command, ids)}
        return {"ok": False, "error": f"unknown command {command!r}"}
