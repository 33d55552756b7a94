"""IMAP grammar pieces shared by the parser and the response writer.

Modified UTF-7 mailbox names (RFC 3501 5.1.3), sequence sets (RFC 3501 9,
``sequence-set``), strings as the server sends them (atom, quoted, literal)
and the two date forms (``date`` and ``date-time``).  Pure functions, no
I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from roost.protocols.imap.errors import ImapError

MAX_NZ_NUMBER = 4_294_967_295  # RFC 3501 9: nz-number is unsigned 32-bit

# --- modified UTF-7 ----------------------------------------------------


def decode_mutf7(name: bytes) -> str:
    """Decode a mailbox name from modified UTF-7 (RFC 3501 5.1.3).

    Strict: printable US-ASCII may not be base64-encoded (case 024), a
    shift sequence must be closed, ``&`` alone is written ``&-``, and the
    name must be 7-bit.  Raises ``ValueError`` on any violation.
    """
    out: list[str] = []
    i = 0
    while i < len(name):
        byte = name[i]
        if byte < 0x20 or byte > 0x7E:
            raise ValueError("mailbox name is not 7-bit printable")
        if byte != 0x26:  # '&'
            out.append(chr(byte))
            i += 1
            continue
        end = name.find(b"-", i + 1)
        if end < 0:
            raise ValueError("unterminated shift sequence")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        out.append(_decode_shift(name[i + 1 : end]))
        i = end + 1
    return "".join(out)


def _decode_shift(chunk: bytes) -> str:
    if not re.fullmatch(rb"[A-Za-z0-9+,]+", chunk):
        raise ValueError("bad base64 in mailbox name")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    raw = base64.b64decode(padded, validate=True)
    if len(raw) % 2:
        raise ValueError("odd UTF-16 length")
    text = raw.decode("utf-16-be", errors="strict")
    if any(0x20 <= ord(c) <= 0x7E for c in text):
        raise ValueError("printable ASCII encoded in mailbox name")
    if encode_mutf7(text).encode("ascii") != b"&" + chunk + b"-":
        raise ValueError("non-canonical shift sequence")
    return text


def encode_mutf7(name: str) -> str:
    """Encode a mailbox name to modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be", errors="surrogatepass")
            text = base64.b64encode(raw).decode("ascii").rstrip("=")
            out.append("&" + text.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


# --- sequence sets -----------------------------------------------------

STAR = 0  # stands for "*" inside a parsed range; resolved later


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed ``sequence-set``: ranges with ``*`` kept symbolic.

    ``ranges`` holds (low, high) pairs as written, ``STAR`` for ``*``; a
    range covers both ends regardless of order (RFC 3501 9).
    """

    ranges: tuple[tuple[int, int], ...]

    @property
    def has_star(self) -> bool:
        return any(STAR in pair for pair in self.ranges)

    def resolved(self, largest: int) -> Iterator[tuple[int, int]]:
        """Yield (low, high) with ``*`` replaced by ``largest``, ordered."""
        for first, second in self.ranges:
            a = largest if first == STAR else first
            b = largest if second == STAR else second
            yield (a, b) if a <= b else (b, a)

    def contains(self, number: int, largest: int) -> bool:
        return any(lo <= number <= hi for lo, hi in self.resolved(largest))

    def max_number(self, largest: int) -> int:
        return max(hi for _lo, hi in self.resolved(largest))


_SEQ_NUMBER = re.compile(r"[1-9][0-9]*|\*")


def parse_sequence_set(text: str) -> SequenceSet:
    """Parse ``1,3:5,7:*``.  Raises ``ImapError`` BAD on bad syntax.

    Numbers are nz-number: 1..4294967295 (case 022: 0 and 2^32 are BAD).
    """
    if not text:
        raise ImapError.bad("Invalid sequence set")
    ranges: list[tuple[int, int]] = []
    for item in text.split(","):
        ends = item.split(":")
        if len(ends) > 2:
            raise ImapError.bad("Invalid sequence set")
        numbers = [_parse_seq_number(end) for end in ends]
        ranges.append((numbers[0], numbers[-1]))
    return SequenceSet(tuple(ranges))


def _parse_seq_number(text: str) -> int:
    if not _SEQ_NUMBER.fullmatch(text) or not text.isascii():
        raise ImapError.bad("Invalid sequence set")
    if text == "*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NZ_NUMBER:
        raise ImapError.bad("Invalid sequence number")
    return int(text)


def format_uid_set(uids: Iterable[int]) -> str:
    """Compress sorted UIDs into ``1:3,5`` form (for APPENDUID/COPYUID)."""
    parts: list[str] = []
    run_start = run_end = -1
    for uid in uids:
        if uid == run_end + 1:
            run_end = uid
            continue
        if run_start >= 0:
            parts.append(_range_text(run_start, run_end))
        run_start = run_end = uid
    if run_start >= 0:
        parts.append(_range_text(run_start, run_end))
    return ",".join(parts)


def _range_text(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}:{high}"


# --- strings the server sends -----------------------------------------

_ATOM_SAFE = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+")


def quoted_or_literal(value: bytes) -> bytes:
    """Format ``value`` as a quoted string, or a literal when it must be.

    Quoted strings may hold only 7-bit text without CR, LF or NUL (RFC 3501
    4.3); anything else goes as a literal.  NUL never leaves the server:
    it is replaced by 0x80 as dovecot does, since a string with NUL would
    need BINARY (case 005).
    """
    if all(0x20 <= b < 0x7F for b in value) and len(value) < 1024:
        escaped = value.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + escaped + b'"'
    return literal(value)


def literal(value: bytes) -> bytes:
    """Format ``value`` as a synchronizing literal, NULs replaced (case 005)."""
    value = value.replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(value) + value


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else quoted_or_literal(value)


def astring(value: bytes) -> bytes:
    """An atom when the value is a plain atom, else quoted or literal."""
    if value and _ATOM_SAFE.fullmatch(value) and value.upper() != b"NIL":
        return value
    return quoted_or_literal(value)


def mailbox_name(name: str) -> bytes:
    """A mailbox name as sent in LIST, STATUS etc.: mUTF-7, quoted."""
    encoded = encode_mutf7(name).encode("ascii")
    return quoted_or_literal(encoded)


# --- dates -------------------------------------------------------------

_MONTH_NAMES = "JanFebMarAprMayJunJulAugSepOctNovDec"
MONTHS = tuple(_MONTH_NAMES[i : i + 3] for i in range(0, 36, 3))
_MONTH_INDEX = {name.lower(): i + 1 for i, name in enumerate(MONTHS)}
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    r" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


def parse_date(text: str) -> dt.date:
    """Parse a SEARCH ``date`` (``1-Feb-1994``).  Raises ImapError BAD."""
    match = _DATE.fullmatch(text)
    month = _MONTH_INDEX.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise ImapError.bad("Invalid date")
    try:
        return dt.date(int(match.group(3)), month, int(match.group(1)))
    except ValueError:
        raise ImapError.bad("Invalid date") from None


def parse_date_time(text: str) -> dt.datetime:
    """Parse an APPEND ``date-time``.  Raises ImapError BAD."""
    match = _DATE_TIME.fullmatch(text)
    month = _MONTH_INDEX.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise ImapError.bad("Invalid date-time")
    day, _mon, year, hh, mm, ss, sign, zh, zm = match.groups()
    offset = dt.timedelta(hours=int(zh), minutes=int(zm))
    if sign == "-":
        offset = -offset
    try:
        return dt.datetime(
            int(year),
            month,
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=dt.timezone(offset),
        )
    except ValueError:
        raise ImapError.bad("Invalid date-time") from None


def format_date_time(moment: dt.datetime) -> bytes:
    """Format an INTERNALDATE: ``"17-Jul-1996 02:44:25 -0700"``."""
    offset = moment.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f"{moment.day:2d}-{MONTHS[moment.month - 1]}-{moment.year:04d} "
        f"{moment:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )
    return b'"' + text.encode("ascii") + b'"'
