"""The per-mailbox index on disk: UIDs, UIDVALIDITY, keyword names.

Blocking functions, called from a worker thread.

``roost-uidlist`` follows dovecot-uidlist's shape::

    1 V<uidvalidity> N<uidnext>
    <uid> W<crlf size> :<base name>

It is rewritten whole to a temporary file, fsynced and renamed over the
old one, so a crash leaves either version; since UIDNEXT only grows and
new UIDs are written before a client hears of them, a UID is never handed
out twice.  ``roost-keywords`` maps the Maildir keyword letters a-z to
names, one ``<index> <name>`` per line, as dovecot-keywords does.

A message's flags live in its file name, as dovecot writes them:
``<base>:2,<letters>`` with D F R S T for \\Draft \\Flagged \\Answered
\\Seen \\Deleted and a-z for keywords.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from roost.mailstore.maildir import INFO_SEPARATOR, fsync_dir

UIDLIST = "roost-uidlist"
KEYWORDS = "roost-keywords"
UIDVALIDITY = "roost-uidvalidity"
MAX_KEYWORDS = 26

_uidvalidity_lock = threading.Lock()

LETTER_OF_FLAG = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
FLAG_OF_LETTER = {letter: flag for flag, letter in LETTER_OF_FLAG.items()}


@dataclass(slots=True)
class UidList:
    uidvalidity: int
    uidnext: int
    uids: dict[str, int] = field(default_factory=dict)  # base name -> UID
    sizes: dict[str, int] = field(default_factory=dict)  # base -> CRLF size


def new_uidvalidity(maildir: Path) -> int:
    """A UIDVALIDITY for a new (or re-created) mailbox of this Maildir++.

    RFC 3501 2.3.1.1: a mailbox deleted and created again must not get
    its old UIDVALIDITY back.  Seconds since the epoch, as dovecot, but
    never less than one more than the last value given out in this user's
    Maildir (kept in ``roost-uidvalidity`` at its root, as dovecot keeps
    dovecot-uidvalidity), so two creations in one second differ too.
    """
    root = maildir.parent if maildir.name.startswith(".") else maildir
    with _uidvalidity_lock:
        last = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            last = int((root / UIDVALIDITY).read_text("ascii").strip() or 0)
        value = max(1, int(time.time()) & 0xFFFFFFFF, (last + 1) & 0xFFFFFFFF)
        _write_atomic(root / UIDVALIDITY, f"{value}\n".encode("ascii"))
    return value


def read_uidlist(maildir: Path) -> UidList | None:
    """Read the uidlist; None when missing or unreadable (then rebuild)."""
    try:
        text = (maildir / UIDLIST).read_text("utf-8", "replace")
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    header = re.fullmatch(r"1 V([0-9]+) N([0-9]+).*", lines[0]) if lines else None
    if header is None:
        return None
    result = UidList(int(header.group(1)), int(header.group(2)))
    for line in lines[1:]:
        match = re.fullmatch(r"([0-9]+)((?: [A-Z][^ ]*)*) :(.+)", line)
        if match is None:
            continue
        base = match.group(3)
        result.uids[base] = int(match.group(1))
        for ext in match.group(2).split():
            if ext.startswith("W") and ext[1:].isdigit():
                result.sizes[base] = int(ext[1:])
    return result


def write_uidlist(maildir: Path, uidlist: UidList) -> None:
    """Replace the uidlist atomically and durably."""
    lines = [f"1 V{uidlist.uidvalidity} N{uidlist.uidnext}"]
    for base, uid in sorted(uidlist.uids.items(), key=lambda item: item[1]):
        size = uidlist.sizes.get(base)
        ext = f" W{size}" if size is not None else ""
        lines.append(f"{uid}{ext} :{base}")
    _write_atomic(maildir / UIDLIST, ("\n".join(lines) + "\n").encode("utf-8"))


def read_keywords(maildir: Path) -> list[str]:
    try:
        text = (maildir / KEYWORDS).read_text("utf-8", "replace")
    except FileNotFoundError:
        return []
    names: list[str] = [""] * MAX_KEYWORDS
    for line in text.splitlines():
        index, _sp, name = line.partition(" ")
        if index.isdigit() and int(index) < MAX_KEYWORDS and name:
            names[int(index)] = name
    while names and not names[-1]:
        names.pop()
    return names


def write_keywords(maildir: Path, names: list[str]) -> None:
    lines = [f"{i} {name}" for i, name in enumerate(names) if name]
    _write_atomic(maildir / KEYWORDS, ("\n".join(lines) + "\n").encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def flags_of_info(info: str, keywords: list[str]) -> tuple[frozenset[str], str]:
    """IMAP flags of a ``:2,`` info part, and the letters Roost keeps as is."""
    flags: set[str] = set()
    other: list[str] = []
    for letter in info:
        if letter in FLAG_OF_LETTER:
            flags.add(FLAG_OF_LETTER[letter])
        elif "a" <= letter <= "z":
            index = ord(letter) - ord("a")
            if index < len(keywords) and keywords[index]:
                flags.add(keywords[index])
        elif letter.isalpha():
            other.append(letter)
    return frozenset(flags), "".join(other)


def info_of_flags(flags: frozenset[str], other: str, keywords: list[str]) -> str:
    """The info letters for ``flags``; keywords must already be in the list."""
    letters = set(other)
    for flag in flags:
        if flag in LETTER_OF_FLAG:
            letters.add(LETTER_OF_FLAG[flag])
        elif flag in keywords:
            letters.add(chr(ord("a") + keywords.index(flag)))
    return "".join(sorted(letters))


class FileEntry(NamedTuple):
    # a tuple, not a frozen dataclass: a rescan makes one per file
    subdir: str  # "new" or "cur"
    filename: str
    base: str
    info: str


def list_messages(maildir: Path) -> dict[str, FileEntry]:
    """Every message file of a Maildir, keyed by base name."""
    found: dict[str, FileEntry] = {}
    for subdir in ("new", "cur"):
        try:
            names = os.listdir(maildir / subdir)
        except FileNotFoundError:
            continue
        for filename in names:
            if filename.startswith("."):
                continue
            base, sep, info = filename.partition(INFO_SEPARATOR)
            if not sep:
                base = filename.split(":", 1)[0]
            if base not in found:
                found[base] = FileEntry(subdir, filename, base, info)
    return found


def dir_stamp(maildir: Path) -> tuple[int, ...]:
    """A cheap fingerprint that changes when a message file comes or goes."""
    stamp: list[int] = []
    for subdir in ("new", "cur"):
        try:
            info = os.stat(maildir / subdir)
        except FileNotFoundError:
            stamp += [0, 0]
            continue
        stamp += [info.st_mtime_ns, info.st_ino]
    return tuple(stamp)


_SIZE_FIELD = re.compile(r",W=([0-9]+)")


def crlf_size_from_name(base: str) -> int | None:
    match = _SIZE_FIELD.search(base)
    return int(match.group(1)) if match else None
