"""A POP3 maildrop: one session's locked, numbered view of a user's INBOX.

How it works. `Maildrop.open(maildir)` takes the POP3 lock of the
Maildir and lists `new/` and `cur/` once; that list, sorted by delivery
order, is the session's snapshot (RFC 1939 §4: messages delivered later
are not seen until the next session). Message numbers index it. DELE
only marks, RSET unmarks, and `commit()` (called for QUIT, the UPDATE
state) unlinks the marked files and moves retrieved ones from `new/` to
`cur/` with the \\Seen flag, as dovecot's POP3 does. A session that ends
any other way calls only `release()`: nothing changes (RFC 1939 §6).

The lock is twofold: a set of locked Maildirs in this process, and an
flock(2) on `<Maildir>/roost-pop3.lock` across processes. The kernel
drops an flock when its holder dies, so a crash leaves no stale lock.

Sizes are those POP3 serves (CRLF line ends, a final CRLF added when
missing; see `roost.protocols.pop3.stuffing`), computed from the file
contents on first need: the `,S=` in a name is the size on disk, and
the CRLF size needs the line count too. A Maildir file never changes
its contents under the same base name, so sizes are cached per process
by Maildir and base name, and kept across restarts in
`<Maildir>/roost-pop3.sizes` (as dovecot keeps them in its index), one
`<size> <base name>` line each, written when a session learned new
sizes or removed messages. It is only a cache: a file that is missing,
torn or not ours is ignored (and rewritten), an entry smaller than the
`,S=` of its name is not believed, and a message read whole for RETR
gets the size of what was read.

UIDLs are the Maildir base names (RFC 1939 §7: unique, never reused,
stable across sessions), which delivery makes unique; a base name that
is not 1-70 characters of 0x21-0x7E is replaced by a digest of it.

Every method here blocks on the disk: call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from roost.mailstore import maildir as md
from roost.protocols.pop3.stuffing import served_size

LOCK_FILE_NAME = "roost-pop3.lock"
SIZES_FILE_NAME = "roost-pop3.sizes"
_SIZES_HEADER = b"roost-pop3-sizes 1\n"
# RFC 1939 §7: a unique-id is 1 to 70 octets in the range 0x21-0x7E.
MAX_UIDL_CHARS = 70
READ_CHUNK_BYTES = 64 * 1024
_SIZE_CACHE_MAX = 200_000
# A sizes file larger than this is not ours to read (about 1M messages).
_SIZES_FILE_MAX = 64 * 1024 * 1024

_DOVECOT_NAME = re.compile(r"(\d+)\.(?:M(\d+))?")
_DISK_SIZE = re.compile(r",S=(\d+)")
_UIDL_CHARS = re.compile(rf"[\x21-\x7e]{{1,{MAX_UIDL_CHARS}}}")
_locked: set[str] = set()
_locked_guard = threading.Lock()
_size_cache: OrderedDict[tuple[str, str], int] = OrderedDict()
_size_cache_guard = threading.Lock()


class MaildropError(Exception):
    """Base of the errors below; the service maps each to a reply."""


class MaildropInUse(MaildropError):  # noqa: N818 (reads as the condition)
    """Another POP3 session holds this maildrop (RFC 2449 [IN-USE])."""


class NoSuchMessage(MaildropError):  # noqa: N818
    """The number is not in this session's snapshot."""


class MessageDeleted(MaildropError):  # noqa: N818
    """The message is marked as deleted in this session."""


class MessageGone(MaildropError):  # noqa: N818
    """The file vanished (another program expunged it) since login."""


@dataclass(slots=True)
class DropMessage:
    """One message of the snapshot, where it was last seen."""

    subdir: str
    name: str
    base: str
    uidl: str
    size: int | None = None
    is_deleted: bool = False
    is_retrieved: bool = False


@dataclass(frozen=True, slots=True)
class CommitResult:
    deleted: int
    failed: int


class Maildrop:
    """A locked snapshot of one Maildir; see the module note."""

    def __init__(
        self,
        maildir: Path,
        lock_fd: int | None,
        messages: list[DropMessage],
    ) -> None:
        self.maildir = maildir
        self.messages = messages
        self._lock_fd: int | None = lock_fd
        self._key = str(maildir)
        # The sizes file as read at open, to know whether to write it.
        self._sizes_on_file: dict[str, int] = {}
        self._is_committed = False
        self._is_released = False

    # -- opening and closing -------------------------------------------

    @classmethod
    def open(cls, maildir: Path, *, exclusive: bool = True) -> Maildrop:
        """Lock `maildir` (created when missing) and take its snapshot.

        Raises MaildropInUse when another session holds it, OSError on
        disk trouble (answer [SYS/TEMP]). With `exclusive=False` no lock
        is taken (dovecot's pop3_lock_session = no): sessions then share
        the Maildir, each with its own snapshot, and a message another
        session removed raises MessageGone.
        """
        md.ensure(maildir)
        maildir = maildir.resolve()
        lock_fd = _acquire(maildir) if exclusive else None
        try:
            messages = _snapshot(maildir)
        except BaseException:
            if lock_fd is not None:
                _release(maildir, lock_fd)
            raise
        drop = cls(maildir, lock_fd, messages)
        drop._load_sizes()
        return drop

    def release(self) -> None:
        """Save newly learned sizes, drop the lock; safe to call more
        than once."""
        if self._is_released:
            return
        self._is_released = True
        try:
            self._save_sizes()
        finally:
            if self._lock_fd is not None:
                _release(self.maildir, self._lock_fd)
                self._lock_fd = None

    # -- the TRANSACTION state -----------------------------------------

    def get(self, msg: int) -> DropMessage:
        """Message number `msg` (1-based), not deleted.

        Raises NoSuchMessage or MessageDeleted.
        """
        if not 1 <= msg <= len(self.messages):
            raise NoSuchMessage(msg)
        message = self.messages[msg - 1]
        if message.is_deleted:
            raise MessageDeleted(msg)
        return message

    def live(self) -> list[tuple[int, DropMessage]]:
        """(number, message) for every message not marked deleted."""
        return [(n, m) for n, m in enumerate(self.messages, 1) if not m.is_deleted]

    def known_sizes(self) -> list[tuple[int, int]] | None:
        """(number, size) of every message not marked deleted, when all
        sizes are known already (no disk); else None."""
        sizes = []
        for n, message in enumerate(self.messages, 1):
            if not message.is_deleted:
                if message.size is None:
                    return None
                sizes.append((n, message.size))
        return sizes

    def stat(self) -> tuple[int, int]:
        """(count, octets) of the messages not marked deleted (RFC 1939 §5)."""
        live = self.live()
        return len(live), sum(self.size_of(m) for _, m in live)

    def size_of(self, message: DropMessage) -> int:
        """The served size; reads the file once per process, then cached."""
        if message.size is None:
            key = (self._key, message.base)
            with _size_cache_guard:
                cached = _size_cache.get(key)
            if cached is None:
                cached = served_size(self._read_all(message))
                _remember_size(key, cached)
            message.size = cached
        return message.size

    def open_message(self, message: DropMessage) -> BinaryIO:
        """An open binary file of the message; MessageGone if expunged."""
        for _ in range(2):
            try:
                return open(self._path(message), "rb")  # noqa: SIM115
            except FileNotFoundError:
                if not self._relocate(message):
                    break
        raise MessageGone(message.uidl)

    def start_read(
        self,
        message: DropMessage,
        first_bytes: int = READ_CHUNK_BYTES,
    ) -> tuple[bytes, BinaryIO | None]:
        """Open the message and read its start, in one trip to the disk.

        Returns the first bytes and the open file to read the rest from,
        or None (file already closed) when the message was shorter.
        MessageGone if expunged.
        """
        file = self.open_message(message)
        try:
            data = file.read(first_bytes)
        except BaseException:
            file.close()
            raise
        if len(data) < first_bytes:
            file.close()
            return data, None
        return data, file

    def learn_size(self, message: DropMessage, data: bytes) -> int:
        """The served size of a message whose whole contents are `data`,
        remembered as `size_of` does (replacing a cached size that was
        wrong); no disk."""
        size = served_size(data)
        if message.size != size:
            message.size = size
            _remember_size((self._key, message.base), size)
        return size

    def read_ahead(
        self,
        messages: list[tuple[int, DropMessage]],
        budget: int,
    ) -> list[tuple[int, int, bytes]]:
        """Read whole messages, in order, while they fit in `budget` bytes.

        For RETR of a session that reads its maildrop in order: the
        messages after the one asked for come in the same trip to the
        disk. Returns (number, served size, contents) of each message
        read; stops at the first that does not fit, and at one that
        cannot be read (its own RETR then reports that).
        """
        found: list[tuple[int, int, bytes]] = []
        for msg, message in messages:
            try:
                with self.open_message(message) as file:
                    if os.fstat(file.fileno()).st_size > budget:
                        break
                    data = file.read(budget + 1)
            except (OSError, MessageGone):
                break
            if len(data) > budget:
                break
            budget -= len(data)
            found.append((msg, self.learn_size(message, data), data))
        return found

    def delete(self, msg: int) -> None:
        """DELE: mark; MessageDeleted when already marked."""
        self.get(msg).is_deleted = True

    def reset(self) -> None:
        """RSET: unmark every message."""
        for message in self.messages:
            message.is_deleted = False

    def mark_retrieved(self, message: DropMessage) -> None:
        message.is_retrieved = True

    # -- the UPDATE state ----------------------------------------------

    def commit(self) -> CommitResult:
        """QUIT: remove marked messages, file retrieved ones as seen.

        Returns how many were removed and how many removals failed
        (RFC 1939 §6: the reply is then -ERR). A message another
        program removed already counts as removed.
        """
        deleted = failed = 0
        changed = False
        for message in self.messages:
            if message.is_deleted:
                changed = True
                if self._unlink(message):
                    deleted += 1
                else:
                    failed += 1
            elif message.is_retrieved:
                changed |= self._mark_seen(message)
        if changed:
            # Nothing renamed or removed (a session that read only seen
            # mail): no directory to make durable.
            for sub in ("new", "cur"):
                md.fsync_dir(self.maildir / sub)
        self._is_committed = True
        return CommitResult(deleted, failed)

    def _unlink(self, message: DropMessage) -> bool:
        for _ in range(2):
            try:
                os.unlink(self._path(message))
                return True
            except FileNotFoundError:
                if not self._relocate(message):
                    return True
            except OSError:
                return False
        return False

    def _mark_seen(self, message: DropMessage) -> bool:
        """File as seen; True when renamed."""
        # Best effort: a concurrent IMAP session may rename it first; the
        # message then stays as that session left it.
        _, flags = md.parse_name(message.name)
        if message.subdir == "cur" and "S" in flags:
            return False
        target = md.name_with_flags(message.base, flags + "S")
        try:
            os.rename(self._path(message), self.maildir / "cur" / target)
        except OSError:
            return False
        message.subdir, message.name = "cur", target
        return True

    # -- the sizes file ---------------------------------------------------

    def _load_sizes(self) -> None:
        """Sizes from this process's cache, else from the sizes file."""
        self._sizes_on_file = on_file = _read_sizes(self.maildir / SIZES_FILE_NAME)
        with _size_cache_guard:
            cached = [_size_cache.get((self._key, m.base)) for m in self.messages]
        for message, size in zip(self.messages, cached, strict=True):
            if size is None:
                size = on_file.get(message.base)
                # The served size is never below the size on disk.
                if size is not None and size < _disk_size(message.base):
                    size = None
            message.size = size

    def _save_sizes(self) -> None:
        """Write the sizes file when it would change; errors are ignored
        (it is a cache)."""
        known = {
            m.base: m.size
            for m in self.messages
            if m.size is not None and not (m.is_deleted and self._is_committed)
        }
        if known == self._sizes_on_file:
            return
        with contextlib.suppress(OSError):
            _write_sizes(self.maildir / SIZES_FILE_NAME, known)
        self._sizes_on_file = known

    # -- files ------------------------------------------------------------

    def _path(self, message: DropMessage) -> Path:
        return self.maildir / message.subdir / message.name

    def _read_all(self, message: DropMessage) -> bytes:
        with self.open_message(message) as f:
            return f.read()

    def _relocate(self, message: DropMessage) -> bool:
        """Find a message renamed since the snapshot (flags, new -> cur)."""
        for sub in ("cur", "new"):
            try:
                names = os.listdir(self.maildir / sub)
            except FileNotFoundError:
                continue
            for name in names:
                if md.parse_name(name)[0] == message.base:
                    if (sub, name) == (message.subdir, message.name):
                        return False
                    message.subdir, message.name = sub, name
                    return True
        return False


class TopFilter:
    """Cuts a message stream for TOP (RFC 1939 §7), chunk by chunk.

    Headers end at the first empty line (LF or CRLF alone); after it,
    `lines` body lines pass. A message with no empty line is all header.
    """

    def __init__(self, lines: int) -> None:
        self.lines_left = lines
        self.is_done = False
        self._in_header = True
        # What the current header line holds so far, when it is b"" or
        # b"\r": only such a line can turn out to be the empty line.
        self._line_so_far: bytes | None = b""

    def feed(self, chunk: bytes) -> bytes:
        """The part of `chunk` to send; sets `is_done` once cut."""
        if self.is_done:
            return b""
        start = 0
        if self._in_header:
            start = self._skip_header(chunk)
            if self._in_header:
                return chunk
        end = self._body_end(chunk, start)
        if end is None:
            return chunk
        self.is_done = True
        return chunk[:end]

    def _skip_header(self, chunk: bytes) -> int:
        pos = 0
        while pos < len(chunk):
            newline = chunk.find(b"\n", pos)
            piece = chunk[pos:] if newline < 0 else chunk[pos:newline]
            if self._line_so_far is not None:
                self._line_so_far += piece
                if self._line_so_far not in (b"", b"\r"):
                    self._line_so_far = None
            if newline < 0:
                return len(chunk)
            is_blank = self._line_so_far is not None
            self._line_so_far = b""
            pos = newline + 1
            if is_blank:
                self._in_header = False
                return pos
        return pos

    def _body_end(self, chunk: bytes, start: int) -> int | None:
        pos = start
        while self.lines_left > 0:
            newline = chunk.find(b"\n", pos)
            if newline < 0:
                return None
            self.lines_left -= 1
            pos = newline + 1
        return pos


def uidl_for(base: str) -> str:
    """The RFC 1939 §7 unique-id of a message with this base name."""
    # Printable ASCII only, so characters and octets are the same.
    if _UIDL_CHARS.fullmatch(base):
        return base
    return "H" + hashlib.sha256(os.fsencode(base)).hexdigest()


def _snapshot(maildir: Path) -> list[DropMessage]:
    found: list[tuple[tuple[int, int, str], DropMessage]] = []
    for sub in ("new", "cur"):
        with os.scandir(maildir / sub) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                base, _ = md.parse_name(entry.name)
                message = DropMessage(sub, entry.name, base, uidl_for(base))
                found.append((_order_key(entry), message))
    found.sort(key=lambda pair: pair[0])
    return [message for _, message in found]


def _order_key(entry: os.DirEntry[str]) -> tuple[int, int, str]:
    # Delivery order: dovecot-style names start with seconds and
    # microseconds; a name of another shape falls back to its mtime.
    match = _DOVECOT_NAME.match(entry.name)
    if match:
        return int(match.group(1)), int(match.group(2) or 0), entry.name
    mtime_ns = entry.stat(follow_symlinks=False).st_mtime_ns
    return mtime_ns // 1_000_000_000, (mtime_ns // 1000) % 1_000_000, entry.name


def _disk_size(base: str) -> int:
    """The `,S=` size in a base name, 0 when there is none."""
    match = _DISK_SIZE.search(base)
    return int(match.group(1)) if match else 0


def _read_sizes(path: Path) -> dict[str, int]:
    """The sizes file's entries; {} when missing or not ours."""
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size > _SIZES_FILE_MAX:
                return {}
            data = file.read()
    except OSError:
        return {}
    if not data.startswith(_SIZES_HEADER):
        return {}
    sizes: dict[str, int] = {}
    # A torn last line (no LF) is left out.
    for line in data[len(_SIZES_HEADER) :].split(b"\n")[:-1]:
        size, sep, base = line.partition(b" ")
        if sep and base and size.isdigit() and len(size) <= 15:
            sizes[os.fsdecode(base)] = int(size)
    return sizes


def _write_sizes(path: Path, sizes: dict[str, int]) -> None:
    """Replace the sizes file at once (a reader sees old or new)."""
    lines = [_SIZES_HEADER]
    for base, size in sizes.items():
        raw = os.fsencode(base)
        if b"\n" not in raw:
            lines.append(b"%d %s\n" % (size, raw))
    fd, tmp = tempfile.mkstemp(prefix=SIZES_FILE_NAME + ".", dir=path.parent)
    try:
        with open(fd, "wb") as file:
            file.write(b"".join(lines))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remember_size(key: tuple[str, str], size: int) -> None:
    with _size_cache_guard:
        _size_cache[key] = size
        _size_cache.move_to_end(key)
        while len(_size_cache) > _SIZE_CACHE_MAX:
            _size_cache.popitem(last=False)


def _acquire(maildir: Path) -> int:
    key = str(maildir)
    with _locked_guard:
        if key in _locked:
            raise MaildropInUse(key)
        _locked.add(key)
    try:
        fd = os.open(maildir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except BaseException:
        _forget(key)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        _forget(key)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise MaildropInUse(key) from None
        raise
    return fd


def _release(maildir: Path, fd: int) -> None:
    try:
        os.close(fd)
    finally:
        _forget(str(maildir))


def _forget(key: str) -> None:
    with _locked_guard:
        _locked.discard(key)
