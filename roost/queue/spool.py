"""The durable spool: queue files, their delivery state, the maildrop.

Layout under queue_directory::

    incoming/   queue files being written (removed at start-up)
    messages/   one immutable queue file per message, named by queue id
    state/      per-message delivery state (JSON), rewritten atomically
    maildrop/   files dropped by `sendmail`, picked up by the server
    public/     qmgr.sock, the server's control socket
    pid/        master.lock, held by the running server

A message exists while messages/ID exists.  Enqueueing writes the queue
file into incoming/, fsyncs it, renames it into messages/ and fsyncs that
directory: only then does `enqueue` return.  One writer thread does all
of this for every caller (group commit: a batch of files, each fsynced,
then one directory fsync for the batch), and also the atomic rewrites of
state files and `remove`, so the event loop never blocks on the disk.
The queue manager removes delivered messages with `remove_now` in its
own delivery threads instead, without a directory fsync, so an enqueue
never waits behind a removal (see roost/queue/manager.py).

State files hold what has happened since: which recipients are done (sent
or bounced), deferral reasons, the next attempt time, hold.  A message
without a state file has had no attempt yet.  Removal unlinks the queue
file first, then the state file, so a crash in between leaves an orphan
state file (removed at start-up), never a message whose progress is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roost.queue.envelope import (
    Envelope,
    QueueFileError,
    decode_queue_file,
    encode_queue_file,
    read_envelope,
)
from roost.queue.queueid import QueueIdSource, is_queue_id

DIRECTORIES = ("incoming", "messages", "state", "maildrop", "public", "pid")
_BATCH_MAX = 512
# ext4 and xfs commit concurrent fsyncs in one journal transaction, so a
# batch synced from several threads costs about one commit, not N.
_FSYNC_THREADS = 16


def _fsync_or_error(fd: int) -> OSError | None:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Create path (which must not exist) with data, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


@dataclass(slots=True)
class QueueState:
    """Delivery progress of one message (the state file).

    ``done`` maps a recipient's index to "sent" or "bounced"; ``reasons``
    maps a pending recipient's index to its last deferral reason;
    ``delivered_users`` lists local mailboxes that already hold a copy.
    """

    hold: bool = False
    next_attempt: float = 0.0
    attempts: int = 0
    warned: bool = False
    forced_expire: bool = False
    done: dict[int, str] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    delivered_users: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> QueueState:
        record: dict[str, Any] = json.loads(raw)
        record["done"] = {int(k): v for k, v in record.get("done", {}).items()}
        record["reasons"] = {int(k): v for k, v in record.get("reasons", {}).items()}
        return cls(**record)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One message as listed by mailq: where it is and what it holds."""

    queue_name: str
    queue_id: str
    envelope: Envelope
    state: QueueState
    file_size: int


class _Job:
    """Work for the writer thread; `run` names the directories to fsync."""

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[str] = concurrent.futures.Future()

    def run(self, spool: Spool, dirty: set[Path]) -> str:
        raise NotImplementedError


class _Enqueue(_Job):
    """Written in three steps so a batch shares its fsyncs: write (no
    sync), then every file of the batch is fsynced in parallel (the
    journal commits them together), then renamed into messages/."""

    def __init__(self, envelope: Envelope, data: bytes) -> None:
        super().__init__()
        self.envelope = envelope
        self.data = data
        self.fd = -1

    def write(self, spool: Spool) -> int:
        env = self.envelope
        if not env.queue_id:
            env.queue_id = spool.new_queue_id()
        while (spool.messages / env.queue_id).exists():
            # Only another process's id in the same second can collide.
            env.queue_id = spool.new_queue_id()
        tmp = spool.incoming / env.queue_id
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(encode_queue_file(env, self.data))
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self.fd = fd
        return fd

    def run(self, spool: Spool, dirty: set[Path]) -> str:
        # called after write() and a successful fsync of self.fd
        queue_id = self.envelope.queue_id
        os.close(self.fd)
        self.fd = -1
        os.rename(spool.incoming / queue_id, spool.messages / queue_id)
        dirty.add(spool.messages)
        return queue_id

    def abandon(self, spool: Spool) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            (spool.incoming / self.envelope.queue_id).unlink(missing_ok=True)


class _WriteState(_Job):
    def __init__(self, queue_id: str, state: QueueState) -> None:
        super().__init__()
        self.queue_id = queue_id
        self.state = state

    def run(self, spool: Spool, dirty: set[Path]) -> str:
        spool.write_state_now(self.queue_id, self.state, fsync_directory=False)
        dirty.add(spool.state_dir)
        return self.queue_id


class _Remove(_Job):
    def __init__(self, queue_id: str, durable: bool) -> None:
        super().__init__()
        self.queue_id = queue_id
        self.durable = durable

    def run(self, spool: Spool, dirty: set[Path]) -> str:
        spool.remove_now(self.queue_id, fsync_directory=False)
        if self.durable:
            dirty.add(spool.messages)
        return self.queue_id


class Spool:
    """The queue directory; see the module note for the layout.

    Blocking methods (``*_now``, ``read``, ``scan``) are for threads and
    command-line tools; coroutines go through the writer thread.
    """

    def __init__(self, queue_directory: Path, *, create: bool = True) -> None:
        self.root = Path(queue_directory)
        self.incoming = self.root / "incoming"
        self.messages = self.root / "messages"
        self.state_dir = self.root / "state"
        self.maildrop = self.root / "maildrop"
        self.socket_path = self.root / "public" / "qmgr.sock"
        self.lock_path = self.root / "pid" / "master.lock"
        self._ids = QueueIdSource()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._listeners: list[Callable[[str], None]] = []
        self._message_listeners: list[Callable[[Envelope, bytes], None]] = []
        self._fsync_pool: concurrent.futures.ThreadPoolExecutor | None = None
        if create:
            self.ensure()

    def ensure(self) -> None:
        """Create the queue directories (maildrop open to local users)."""
        for name in DIRECTORIES:
            (self.root / name).mkdir(mode=0o700, parents=True, exist_ok=True)

    def new_queue_id(self) -> str:
        """A fresh queue id (assigned when an SMTP transaction opens)."""
        return self._ids.next()

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """Call callback(queue_id) on the event loop after each enqueue."""
        self._listeners.append(callback)

    def add_message_listener(self, callback: Callable[[Envelope, bytes], None]) -> None:
        """Call callback(envelope, data) on the event loop after each
        enqueue, before the queue-id listeners: the queue manager keeps
        the message it is about to deliver instead of reading it back."""
        self._message_listeners.append(callback)

    # -- the writer thread -------------------------------------------------

    async def enqueue(self, envelope: Envelope, data: bytes) -> str:
        """Write envelope + data durably; return the queue id.

        Returns only after the queue file and its directory entry are
        fsynced.  envelope.queue_id is used when set (else assigned), and
        envelope.size is filled in when zero.  Raises OSError when the
        disk refuses (the caller answers 451 4.3.0).
        """
        if not envelope.arrival_time:
            envelope.arrival_time = time.time()
        if not envelope.size:
            envelope.size = len(data)
        queue_id = await self._submit(_Enqueue(envelope, data))
        for message_callback in self._message_listeners:
            message_callback(envelope, data)
        for callback in self._listeners:
            callback(queue_id)
        return queue_id

    def enqueue_now(self, envelope: Envelope, data: bytes) -> str:
        """Blocking enqueue for threads (no listeners are told)."""
        if not envelope.arrival_time:
            envelope.arrival_time = time.time()
        if not envelope.size:
            envelope.size = len(data)
        job = _Enqueue(envelope, data)
        self._start_writer()
        self._jobs.put(job)
        return job.future.result()

    async def write_state(self, queue_id: str, state: QueueState) -> None:
        """Replace the state file of queue_id atomically and durably."""
        await self._submit(_WriteState(queue_id, state))

    async def remove(self, queue_id: str, *, durable: bool = True) -> None:
        """Remove a message; durable=False skips the directory fsync.

        Without the fsync a crash may bring the message back (until the
        next enqueue's directory fsync or the kernel's commit): local
        copies are then found and not written twice, remote recipients
        get a second copy.  The queue manager accepts that, as postfix
        does (see roost/queue/manager.py); durable=True is for callers
        that must not resend.
        """
        await self._submit(_Remove(queue_id, durable))

    async def _submit(self, job: _Job) -> str:
        self._start_writer()
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)

    def _start_writer(self) -> None:
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(
                    target=self._write_loop, name="roost-spool-writer", daemon=True
                )
                self._writer.start()

    def close(self) -> None:
        """Stop the writer thread after the jobs already submitted."""
        with self._writer_lock:
            writer = self._writer
            self._writer = None
        if writer is not None and writer.is_alive():
            self._jobs.put(None)
            writer.join()
        if self._fsync_pool is not None:
            self._fsync_pool.shutdown()
            self._fsync_pool = None

    def _write_loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _BATCH_MAX:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Job]) -> None:
        dirty: set[Path] = set()
        results: list[tuple[_Job, str | BaseException]] = []
        ready = self._sync_new_files(batch, results)
        for job in batch:
            if isinstance(job, _Enqueue) and job not in ready:
                continue
            try:
                results.append((job, job.run(self, dirty)))
            except Exception as exc:  # handed to the waiting caller
                results.append((job, exc))

        sync_error: OSError | None = None
        for directory in dirty:
            try:
                fsync_dir(directory)
            except OSError as exc:
                sync_error = exc
        for job, result in results:
            # The waiting session may have been cancelled (shutdown); its
            # queue file stays and is delivered, as postfix does when the
            # client vanishes after the data went to disk.
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                elif sync_error is not None:
                    job.future.set_exception(sync_error)
                else:
                    job.future.set_result(result)

    def _sync_new_files(
        self, batch: list[_Job], results: list[tuple[_Job, str | BaseException]]
    ) -> set[_Job]:
        """Write the batch's new queue files and fsync them in parallel."""
        written: list[_Enqueue] = []
        for job in batch:
            if not isinstance(job, _Enqueue):
                continue
            try:
                job.write(self)
                written.append(job)
            except Exception as exc:
                results.append((job, exc))
        if len(written) > 1:
            if self._fsync_pool is None:
                self._fsync_pool = concurrent.futures.ThreadPoolExecutor(
                    _FSYNC_THREADS, thread_name_prefix="roost-spool-fsync"
                )
            outcomes = list(
                self._fsync_pool.map(_fsync_or_error, [j.fd for j in written])
            )
        else:
            outcomes = [_fsync_or_error(j.fd) for j in written]
        ready: set[_Job] = set()
        for job, error in zip(written, outcomes, strict=True):
            if error is None:
                ready.add(job)
            else:
                job.abandon(self)
                results.append((job, error))
        return ready

    # -- blocking file operations -----------------------------------------

    def read(self, queue_id: str) -> tuple[Envelope, bytes]:
        """The envelope and message of queue_id; raises OSError, QueueFileError."""
        return decode_queue_file((self.messages / queue_id).read_bytes())

    def read_envelope(self, queue_id: str) -> Envelope:
        return read_envelope(str(self.messages / queue_id))

    def read_state(self, queue_id: str) -> QueueState:
        """The state of queue_id; a fresh state when it has none yet."""
        try:
            return QueueState.from_json((self.state_dir / queue_id).read_bytes())
        except FileNotFoundError:
            return QueueState()
        except (ValueError, TypeError):
            # A torn state file cannot happen (atomic rename); a foreign
            # one is treated as no progress: local copies are deduplicated.
            return QueueState()

    def exists(self, queue_id: str) -> bool:
        return (self.messages / queue_id).exists()

    def write_state_now(
        self, queue_id: str, state: QueueState, *, fsync_directory: bool = True
    ) -> None:
        tmp = self.state_dir / f".{queue_id}.tmp"
        tmp.unlink(missing_ok=True)
        write_durably(tmp, state.to_json())
        os.rename(tmp, self.state_dir / queue_id)
        if fsync_directory:
            fsync_dir(self.state_dir)

    def remove_now(self, queue_id: str, *, fsync_directory: bool = True) -> bool:
        """Unlink the queue file, then the state file; False if absent."""
        try:
            os.unlink(self.messages / queue_id)
        except FileNotFoundError:
            found = False
        else:
            found = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.state_dir / queue_id)
        if fsync_directory and found:
            fsync_dir(self.messages)
        return found

    def queue_ids(self) -> list[str]:
        """Ids of every message in the queue, oldest first."""
        try:
            entries = os.scandir(self.messages)
        except FileNotFoundError:
            return []
        with entries:
            return sorted(e.name for e in entries if is_queue_id(e.name))

    def recover(self) -> None:
        """Clean up after a crash: half-written files, orphan state files."""
        for entry in os.scandir(self.incoming):
            os.unlink(entry.path)
        present = set(self.queue_ids())
        for entry in os.scandir(self.state_dir):
            if entry.name.startswith(".") or entry.name not in present:
                os.unlink(entry.path)

    def queue_name(self, state: QueueState, *, active: bool = False) -> str:
        """postfix's queue name for a message in this state."""
        if state.hold:
            return "hold"
        if active or state.attempts == 0:
            return "active"
        return "deferred"

    def scan(self, active_ids: frozenset[str] = frozenset()) -> Iterator[QueueEntry]:
        """Every message (then every maildrop file) for mailq, oldest first.

        A file picked up while the scan runs is listed once, as queued.
        """
        dropped = self.maildrop_names()
        listed: set[str] = set()
        for queue_id in self.queue_ids():
            entry = self._queued_entry(queue_id, active_ids)
            if entry is not None:
                listed.add(queue_id)
                yield entry
        for name in dropped:
            if name in listed:
                continue
            try:
                envelope, size = self._maildrop_envelope(name)
            except FileNotFoundError:
                entry = self._queued_entry(name, active_ids)
                if entry is not None:
                    yield entry
                continue
            except (OSError, QueueFileError):
                continue
            yield QueueEntry("maildrop", name, envelope, QueueState(), size)

    def _queued_entry(
        self, queue_id: str, active_ids: frozenset[str]
    ) -> QueueEntry | None:
        try:
            envelope = self.read_envelope(queue_id)
            size = (self.messages / queue_id).stat().st_size
        except (OSError, QueueFileError):
            return None
        state = self.read_state(queue_id)
        name = self.queue_name(state, active=queue_id in active_ids)
        return QueueEntry(name, queue_id, envelope, state, size)

    def _maildrop_envelope(self, name: str) -> tuple[Envelope, int]:
        path = self.maildrop / name
        return read_envelope(str(path)), path.stat().st_size

    # -- the maildrop -----------------------------------------------------

    def drop(self, envelope: Envelope, data: bytes) -> str:
        """Write a message into the maildrop durably (used by sendmail).

        Works without a running server; the file name is a queue id which
        the server keeps when it picks the file up.
        """
        if not envelope.arrival_time:
            envelope.arrival_time = time.time()
        envelope.size = len(data)
        raw = encode_queue_file(envelope, data)
        while True:
            name = self.new_queue_id()
            tmp = self.maildrop / f".{name}.tmp"
            write_durably(tmp, raw)
            try:
                os.link(tmp, self.maildrop / name)
            except FileExistsError:
                tmp.unlink()
                continue
            tmp.unlink()
            fsync_dir(self.maildrop)
            return name

    def maildrop_names(self) -> list[str]:
        """Complete maildrop files waiting for pickup, oldest first."""
        try:
            entries = os.scandir(self.maildrop)
        except FileNotFoundError:
            return []
        with entries:
            return sorted(e.name for e in entries if is_queue_id(e.name))

    def in_maildrop(self, name: str) -> bool:
        return is_queue_id(name) and (self.maildrop / name).exists()

    def read_maildrop(self, name: str) -> tuple[Envelope, bytes]:
        """A maildrop file's envelope and message; raises OSError, QueueFileError."""
        return decode_queue_file((self.maildrop / name).read_bytes())

    def remove_maildrop(self, name: str) -> bool:
        """Unlink a maildrop file durably; False when it is not there."""
        if not is_queue_id(name):
            return False
        try:
            os.unlink(self.maildrop / name)
        except FileNotFoundError:
            return False
        fsync_dir(self.maildrop)
        return True

    # -- the master lock --------------------------------------------------

    def try_lock(self) -> int | None:
        """Take the exclusive queue lock; the fd, or None when it is held.

        The running server holds it for its whole life; command-line
        tools hold it while they change files with no server running.
        """
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return fd

    def lock(self, timeout_s: float = 10.0) -> int:
        """Wait up to timeout_s for the queue lock; raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            fd = self.try_lock()
            if fd is not None:
                return fd
            if time.monotonic() >= deadline:
                raise TimeoutError(f"queue {self.root} is locked by another process")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    @staticmethod
    def unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
