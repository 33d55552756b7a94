"""SEARCH evaluation (RFC 3501 6.4.4), free of I/O.

The caller gives one ``Candidate`` per message; the message text is asked
for only when a key needs it.  String keys match case-insensitively as
substrings, after RFC 2047 decoding of header fields and transfer decoding
of text bodies, so a client can search what the user sees.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import email.header
import email.utils
import quopri
import typing

from roost.mailstore import mime
from roost.protocols.imap.commands import SearchKey
from roost.protocols.imap.grammar import SequenceSet

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_ADDRESS_KEYS = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc"}


class Candidate(typing.Protocol):
    seq: int
    uid: int
    flags: frozenset[str]
    is_recent: bool
    size: int

    @property
    def internaldate(self) -> dt.datetime: ...

    def headers(self) -> list[tuple[str, bytes]]: ...

    def header_values(self, name: str) -> list[bytes]:
        """Raw values of the top-level fields called ``name`` (lower case)."""
        ...

    def message(self) -> tuple[bytes, mime.Part]: ...


def needs_text(key: SearchKey) -> bool:
    """Whether a key reads message octets (for batching in a thread)."""
    if key.op in ("BODY", "TEXT", "HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"):
        return True
    if key.op in _ADDRESS_KEYS or key.op == "SUBJECT":
        return True
    return any(isinstance(a, SearchKey) and needs_text(a) for a in key.args)


def matches(key: SearchKey, msg: Candidate, largest_seq: int, largest_uid: int) -> bool:
    op, args = key.op, key.args
    if op == "AND":
        return all(
            matches(typing.cast(SearchKey, k), msg, largest_seq, largest_uid)
            for k in args
        )
    if op == "OR":
        left, right = typing.cast(tuple[SearchKey, SearchKey], args)
        return matches(left, msg, largest_seq, largest_uid) or matches(
            right, msg, largest_seq, largest_uid
        )
    if op == "NOT":
        return not matches(
            typing.cast(SearchKey, args[0]), msg, largest_seq, largest_uid
        )
    return _simple_match(op, args, msg, largest_seq, largest_uid)


def _simple_match(
    op: str,
    args: tuple[object, ...],
    msg: Candidate,
    largest_seq: int,
    largest_uid: int,
) -> bool:
    if op == "ALL":
        return True
    if op in _FLAG_KEYS:
        flag, wanted = _FLAG_KEYS[op]
        return (flag in msg.flags) == wanted
    if op in ("RECENT", "NEW", "OLD"):
        if op == "OLD":
            return not msg.is_recent
        return msg.is_recent and (op == "RECENT" or "\\Seen" not in msg.flags)
    if op in ("KEYWORD", "UNKEYWORD"):
        return (args[0] in msg.flags) == (op == "KEYWORD")
    if op == "LARGER":
        return msg.size > typing.cast(int, args[0])
    if op == "SMALLER":
        return msg.size < typing.cast(int, args[0])
    if op == "SEQ":
        return typing.cast(SequenceSet, args[0]).contains(msg.seq, largest_seq)
    if op == "UID":
        return typing.cast(SequenceSet, args[0]).contains(msg.uid, largest_uid)
    if op in ("BEFORE", "ON", "SINCE"):
        return _compare_date(op, msg.internaldate.date(), typing.cast(dt.date, args[0]))
    return _text_match(op, args, msg)


def _compare_date(op: str, value: dt.date | None, wanted: dt.date) -> bool:
    if value is None:
        return False
    if op.endswith("BEFORE"):
        return value < wanted
    if op.endswith("ON"):
        return value == wanted
    return value >= wanted


def _text_match(op: str, args: tuple[object, ...], msg: Candidate) -> bool:
    if op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        return _compare_date(op, _sent_date(msg), typing.cast(dt.date, args[0]))
    if op in _ADDRESS_KEYS or op == "SUBJECT":
        name = _ADDRESS_KEYS.get(op, "Subject")
        return _header_contains(msg, name, typing.cast(str, args[0]))
    if op == "HEADER":
        name, value = typing.cast(tuple[str, str], args)
        return _header_contains(msg, name, value)
    needle = typing.cast(str, args[0]).casefold()
    data, root = msg.message()
    if op == "TEXT" and _contains_header_text(msg.headers(), needle):
        return True
    return _body_contains(data, root, needle)


def _sent_date(msg: Candidate) -> dt.date | None:
    values = msg.header_values("date")
    if not values:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(values[0].decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.date() if parsed else None


def decode_header_value(raw: bytes) -> str:
    """RFC 2047 decoding for matching; undecodable pieces stay as text."""
    text = raw.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        pieces = email.header.decode_header(text)
    except (ValueError, LookupError, binascii.Error):
        return text
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except LookupError:
            out.append(chunk.decode("utf-8", "replace"))
    return "".join(out)


def _header_contains(msg: Candidate, name: str, value: str) -> bool:
    needle = value.casefold()
    return any(
        needle in decode_header_value(raw).casefold()
        for raw in msg.header_values(name.lower())
    )


def _contains_header_text(headers: list[tuple[str, bytes]], needle: str) -> bool:
    return any(
        needle in f"{k}: {decode_header_value(v)}".casefold() for k, v in headers
    )


def _body_contains(data: bytes, root: mime.Part, needle: str) -> bool:
    for part in mime.iter_parts(root):
        if part.is_multipart or part.message is not None:
            continue
        body = data[part.body_start : part.end]
        if needle in _decoded_text(part, body).casefold():
            return True
    return False


def _decoded_text(part: mime.Part, body: bytes) -> str:
    encoding = (part.header("Content-Transfer-Encoding") or b"").strip().lower()
    if encoding == b"base64":
        with contextlib.suppress(binascii.Error, ValueError):
            body = base64.b64decode(body, validate=False)
    elif encoding == b"quoted-printable":
        body = quopri.decodestring(body)
    charset = dict(part.params).get("charset", "utf-8")
    try:
        return body.decode(charset, "replace")
    except LookupError:
        return body.decode("utf-8", "replace")
