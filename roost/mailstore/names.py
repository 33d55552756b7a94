"""Mailbox names: what a client may ask for, and where it lives on disk.

Clients see ``/`` as the hierarchy separator.  On disk a folder is a
Maildir++ directory ``.<level>.<level>`` beside INBOX's cur/new/tmp, each
level stored in modified UTF-7 with ``%`` and ``.`` escaped as ``%25`` and
``%2E``, so ``Projects.2026`` and ``Projects/2026`` are distinct folders
(case 024).

Case 024 also fixes what is refused: empty levels (``a//b``, a leading
``/``), ``.`` and ``..`` levels, control characters, and anything whose
resolved directory is not a direct child of the user's Maildir.  The check
is made on path components after the mapping, never on strings alone.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from roost.protocols.imap.grammar import decode_mutf7, encode_mutf7

SEPARATOR = "/"
INBOX = "INBOX"
MAX_NAME_CHARS = 512
MAX_LEVEL_BYTES = 200
MAX_LEVELS = 16


class InvalidName(ValueError):  # noqa: N818 (reads as the condition)
    """A mailbox name Roost will not map to a directory."""


def normalise(name: str) -> str:
    """INBOX in any case becomes ``INBOX``, also as a first level."""
    head, sep, rest = name.partition(SEPARATOR)
    if head.upper() == INBOX:
        return INBOX + sep + rest
    return name


def levels(name: str) -> list[str]:
    """Split and check a mailbox name.  Raises ``InvalidName``."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidName("empty or too long")
    parts = normalise(name).split(SEPARATOR)
    if len(parts) > MAX_LEVELS:
        raise InvalidName("too deep")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidName("empty, '.' or '..' level")
        if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in part):
            raise InvalidName("control character")
        if len(encode_mutf7(part)) > MAX_LEVEL_BYTES:
            raise InvalidName("level too long")
    return parts


def _escape(level: str) -> str:
    return encode_mutf7(level).replace("%", "%25").replace(".", "%2E")


def _unescape(text: str) -> str:
    if "%" in text.replace("%25", "").replace("%2E", ""):
        raise InvalidName("bad escape on disk")
    raw = text.replace("%2E", ".").replace("%25", "%")
    try:
        return decode_mutf7(raw.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidName("bad folder name on disk") from None


def folder_dirname(name: str) -> str | None:
    """The directory name of a folder, None for INBOX itself."""
    parts = levels(name)
    if parts == [INBOX]:
        return None
    return "." + ".".join(_escape(p) for p in parts)


def folder_path(root: Path, name: str) -> Path:
    """Resolve a mailbox name to its Maildir, confined to ``root``.

    Raises ``InvalidName`` for a name that does not map to a direct child
    of ``root`` (or ``root`` itself for INBOX).
    """
    dirname = folder_dirname(name)
    if dirname is None:
        return root
    if "/" in dirname or "\x00" in dirname or dirname in (".", ".."):
        raise InvalidName("separator in directory name")
    path = root / dirname
    if path.parent != root or path.name != dirname:
        raise InvalidName("outside the user's Maildir")
    if path.is_symlink():
        raise InvalidName("symbolic link")
    return path


def name_of_dirname(dirname: str) -> str:
    """The mailbox name of a ``.Folder`` directory.  Raises ``InvalidName``."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise InvalidName("not a folder directory")
    pieces = dirname[1:].split(".")
    parts = [_unescape(p) for p in pieces]
    name = SEPARATOR.join(parts)
    levels(name)
    return normalise(name)
