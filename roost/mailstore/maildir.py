"""Maildir on disk, at the lowest level: names, directories, durable writes.

The layout is the one postfix's local(8) and dovecot use, so existing tools
read what Roost writes: each mailbox has ``tmp/``, ``new/`` and ``cur/``; a
message is written to ``tmp/``, fsynced, and renamed into ``new/`` (or into
``cur/`` with an ``:2,FLAGS`` info suffix), then the directory is fsynced so
the rename itself survives a crash.  Maildir++ folders live beside them as
``.Name`` directories.

Base names follow dovecot's shape, ``<sec>.M<usec>P<pid>Q<n>.<host>``, with
``,S=<size>`` appended (the size on disk), so that a reader can learn the
size without a stat.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

SUBDIRS = ("cur", "new", "tmp")
INFO_SEPARATOR = ":2,"

_counter = itertools.count(1)


def mailbox_path(mailbox_directory: Path, user: str) -> Path:
    """Return the INBOX Maildir of ``user`` under ``mailbox_directory``.

    ``user`` must already be a validated user name (no ``/`` or ``..``);
    a ``name@domain`` virtual user lives under ``domain/name``.
    """
    if "@" in user:
        local, domain = user.rsplit("@", 1)
        return mailbox_directory / domain / local / "Maildir"
    return mailbox_directory / user / "Maildir"


def ensure(maildir: Path, mode: int = 0o700) -> None:
    """Create ``maildir`` with its cur/new/tmp subdirectories if missing."""
    for sub in SUBDIRS:
        (maildir / sub).mkdir(mode=mode, parents=True, exist_ok=True)


def _hostname() -> str:
    # A '/' or ':' in the host part would break the name; dovecot escapes
    # them as octal, which we follow.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


_HOST = _hostname()


def unique_name(unique: str | None = None) -> str:
    """Make a new base name, unique on this host.

    ``unique`` replaces the time/pid part when the caller needs a name it can
    find again (the queue uses it to avoid delivering twice after a crash);
    it must be made of characters safe in a file name.
    """
    if unique is not None:
        if not unique or any(c in unique for c in "/:\0") or unique[0] == ".":
            raise ValueError("unsafe unique part")
        return f"{int(time.time())}.{unique}.{_HOST}"
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    # microseconds zero-padded so names of one second sort by time
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_counter)}.{_HOST}"


def parse_name(name: str) -> tuple[str, str]:
    """Split a file name into (base name, flags).

    Flags are the letters after ``:2,`` (empty when there is no info part).
    """
    base, sep, flags = name.partition(INFO_SEPARATOR)
    if not sep:
        base = name.split(":", 1)[0]
    return base, flags


def name_with_flags(base: str, flags: str) -> str:
    """Return the ``cur/`` name for ``base`` with ``flags`` sorted, as dovecot."""
    return f"{base}{INFO_SEPARATOR}{''.join(sorted(set(flags)))}"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def deliver(
    maildir: Path,
    data: bytes,
    *,
    flags: str = "",
    unique: str | None = None,
    mtime: float | None = None,
) -> Path:
    """Write ``data`` as a new message into ``maildir`` durably.

    The data is written as given.  The file is fsynced in ``tmp/`` and renamed
    into ``new/`` (or ``cur/`` when ``flags`` are given, or ``mtime`` names an
    internal date to keep), then the target directory is fsynced.  Returns
    the final path.  Raises ``OSError`` (ENOSPC, EACCES, ENOENT for a missing
    Maildir); the caller should treat that as a temporary failure.
    """
    base = f"{unique_name(unique)},S={len(data)}"
    tmp_path = maildir / "tmp" / base
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp_path.unlink(missing_ok=True)
        raise
    os.close(fd)
    if mtime is not None:
        os.utime(tmp_path, (mtime, mtime))

    if flags:
        target_dir = maildir / "cur"
        final = target_dir / name_with_flags(base, flags)
    else:
        target_dir = maildir / "new"
        final = target_dir / base
    os.rename(tmp_path, final)
    fsync_dir(target_dir)
    return final
