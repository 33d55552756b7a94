"""The users file: a dovecot-style passwd-file.

One user per line, `name:{SCHEME}hash:uid:gid:gecos:home:shell:extra`
(dovecot's passwd-file format; Roost writes `name:{SCHEME}hash::::::`
and keeps other fields as it finds them). `#` lines and blank lines are
ignored; the first line for a name wins, as in dovecot.

Reads are cached and reloaded when the file's inode, size or mtime
changes, so `roost user add` in another process is seen at the next
lookup. Writes take an flock on `<file>.lock`, rewrite the file to a
temporary name, fsync it and rename it over the old one (mode 0600), so
a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from roost.auth import schemes

log = logging.getLogger("roost.auth")

MAX_NAME_CHARS = 255
MAX_PASSWORD_CHARS = 256

# Letters (any script), digits, `.`, `_`, `-`, and one `@` for a virtual
# user `name@domain`. Names become directory names under
# mailbox_directory, so `/`, `..`, NUL, `:` and white space are out.
_NAME = re.compile(r"[^\W][\w.-]*(?:@[^\W_][\w.-]*)?")


class UserError(Exception):
    """A users-file operation was refused; str() is fit to show a user."""


class InvalidUserName(UserError):  # noqa: N818 (reads as the condition)
    pass


class UserExists(UserError):  # noqa: N818
    pass


class UnknownUser(UserError):  # noqa: N818
    pass


class BadPassword(UserError):  # noqa: N818
    pass


def normalize_name(name: str) -> str:
    """The canonical (lower-case) form of a user name; InvalidUserName.

    `name@domain` is allowed for virtual users; each side must start
    with a letter or digit and may not hold `..`.
    """
    canonical = name.lower()
    if (
        not canonical
        or len(canonical) > MAX_NAME_CHARS
        or not _NAME.fullmatch(canonical)
        or ".." in canonical
        or not canonical.isprintable()
    ):
        raise InvalidUserName(f"invalid user name {name!r}")
    return canonical


def check_password(password: str) -> None:
    """Refuse passwords that cannot be typed in a protocol line."""
    if not password:
        raise BadPassword("empty password")
    if len(password) > MAX_PASSWORD_CHARS:
        raise BadPassword("password too long")
    if any(ch in password for ch in "\0\r\n"):
        raise BadPassword("password contains NUL, CR or LF")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str
    line: int


_Signature = tuple[int, int, int]
# a change to the users file: its lines in, the new lines out
_Change = Callable[[list[str]], list[str]]


class UserDB:
    """Users in a passwd-file; see the module note for the format."""

    # How long a verified (name, password) pair is remembered, as
    # dovecot's auth_cache_ttl: a mail client logs in for every poll,
    # and an argon2 verification costs ~0.1 s of CPU.
    cache_ttl_s = 300.0
    cache_max_entries = 10_000

    def __init__(
        self,
        users_file: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(users_file)
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._users: dict[str, User] = {}
        self._cache: OrderedDict[tuple[str, bytes], tuple[str, float]] = OrderedDict()
        self._cache_key = secrets.token_bytes(32)

    # reading

    def _current(self) -> dict[str, User]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            signature = None
        else:
            signature = (st.st_ino, st.st_size, st.st_mtime_ns)

        with self._lock:
            if signature != self._signature:
                self._users = self._read() if signature else {}
                self._signature = signature
                self._cache.clear()
            return self._users

    def _read(self) -> dict[str, User]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        users: dict[str, User] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            user = _parse_line(line, number, self.path)
            if user is not None and user.name not in users:
                users[user.name] = user
        return users

    def exists(self, name: str) -> bool:
        """Whether name is a user (cheap: one stat, then a dict lookup)."""
        try:
            canonical = normalize_name(name)
        except InvalidUserName:
            return False
        return canonical in self._current()

    def list(self) -> list[str]:
        """All user names, sorted."""
        return sorted(self._current())

    def verify(self, name: str, password: str) -> str | None:
        """The canonical user name if password is right, else None.

        Blocking (a password hash costs ~0.1 s): from asyncio code use
        `averify`. A missing user costs the same hash work as a wrong
        password.
        """
        try:
            canonical = normalize_name(name)
        except InvalidUserName:
            canonical = ""
        user = self._current().get(canonical) if canonical else None
        if user is None or not password:
            schemes.verify_password(schemes.dummy_hash(), password)
            return None

        key = (canonical, self._password_digest(user.password, password))
        if self._cached(key):
            return canonical
        try:
            ok = schemes.verify_password(user.password, password)
        except schemes.UnknownScheme as exc:
            log.error("%s:%d: user %s: %s", self.path, user.line, canonical, exc)
            return None
        if ok:
            self._remember(key, canonical)
            return canonical
        return None

    async def averify(self, name: str, password: str) -> str | None:
        """`verify` in a worker thread, for the event loop."""
        return await asyncio.to_thread(self.verify, name, password)

    def _password_digest(self, stored: str, password: str) -> bytes:
        # keyed with a per-process secret: the cache never holds anything
        # a memory dump could turn back into a password
        message = f"{stored}\0{password}".encode()
        return hmac.new(self._cache_key, message, hashlib.sha256).digest()

    def _cached(self, key: tuple[str, bytes]) -> bool:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return False
            if hit[1] < self._clock():
                del self._cache[key]
                return False
            return True

    def _remember(self, key: tuple[str, bytes], canonical: str) -> None:
        with self._lock:
            self._cache[key] = (canonical, self._clock() + self.cache_ttl_s)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_max_entries:
                self._cache.popitem(last=False)

    # writing

    def add(
        self, name: str, password: str, scheme: str = schemes.DEFAULT_SCHEME
    ) -> str:
        """Add a user; returns the canonical name.

        Raises InvalidUserName, BadPassword or UserExists.
        """
        canonical = normalize_name(name)
        check_password(password)
        line = f"{canonical}:{schemes.hash_password(password, scheme)}::::::\n"

        def change(lines: list[str]) -> list[str]:
            if _find(lines, canonical) is not None:
                raise UserExists(f"user {canonical} already exists")
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            return [*lines, line]

        self._rewrite(change)
        return canonical

    def set_password(
        self, name: str, password: str, scheme: str = schemes.DEFAULT_SCHEME
    ) -> None:
        """Replace a user's password; UnknownUser, BadPassword."""
        canonical = normalize_name(name)
        check_password(password)
        hashed = schemes.hash_password(password, scheme)

        def change(lines: list[str]) -> list[str]:
            index = _find(lines, canonical)
            if index is None:
                raise UnknownUser(f"no such user {canonical}")
            fields = lines[index].rstrip("\n").split(":")
            fields[1] = hashed
            lines[index] = ":".join(fields) + "\n"
            return lines

        self._rewrite(change)

    def delete(self, name: str) -> None:
        """Remove a user from the file (mail stays on disk); UnknownUser."""
        canonical = normalize_name(name)

        def change(lines: list[str]) -> list[str]:
            index = _find(lines, canonical)
            if index is None:
                raise UnknownUser(f"no such user {canonical}")
            return lines[:index] + lines[index + 1 :]

        self._rewrite(change)

    def _rewrite(self, change: _Change) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._write_lock():
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            lines = change(text.splitlines(keepends=True))
            write_atomic(self.path, "".join(lines).encode("utf-8"))

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _parse_line(line: str, number: int, path: Path) -> User | None:
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    fields = line.split(":")
    if len(fields) < 2:
        log.warning("%s:%d: no password field, line ignored", path, number)
        return None
    try:
        name = normalize_name(fields[0])
    except InvalidUserName:
        log.warning("%s:%d: invalid user name, line ignored", path, number)
        return None
    return User(name, fields[1], number)


def _find(lines: list[str], canonical: str) -> int | None:
    for index, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        name = line.split(":", 1)[0]
        try:
            if normalize_name(name) == canonical:
                return index
        except InvalidUserName:
            continue
    return None


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace path with data: temp file, fsync, rename, fsync directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
