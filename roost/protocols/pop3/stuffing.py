"""Streaming RETR/TOP body encoder: CRLF line ends and byte-stuffing.

Messages are stored with LF (or mixed) line ends; POP3 sends CRLF. The
encoder turns every LF not preceded by CR into CRLF (a bare CR stays as
it is: it ends no line for any client), prepends "." to every line that
starts with "." (RFC 1939 §3), and on `finish` adds a CRLF if the
message did not end with one, then the terminating ".CRLF" (case 028).
It works on chunks split anywhere: a CR at the end of one chunk and the
LF or "." at the start of the next are handled as if they were joined.

`served_size(data)` is the size of the unstuffed form, the number that
LIST and STAT report (RFC 1939 §5, case 026), so LIST equals the octets
a client like poplib counts for RETR.
"""

from __future__ import annotations


class DotStuffer:
    """Encodes one message body; feed chunks, then call `finish` once."""

    def __init__(self) -> None:
        self._is_line_start = True
        self._has_pending_cr = False

    def feed(self, chunk: bytes) -> bytes:
        """Encode the next chunk; may hold back one trailing CR."""
        if self._has_pending_cr:
            chunk = b"\r" + chunk
            self._has_pending_cr = False
        if chunk.endswith(b"\r"):
            # Whether this CR starts a CRLF is known only next time.
            chunk = chunk[:-1]
            self._has_pending_cr = True
        if not chunk:
            return b""
        if b"\r" in chunk:
            text = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        else:
            # LF-only, as stored: one memchr saves a whole search pass.
            text = chunk.replace(b"\n", b"\r\n")
        text = text.replace(b"\n.", b"\n..")
        if self._is_line_start and text.startswith(b"."):
            text = b"." + text
        self._is_line_start = text.endswith(b"\n")
        return text

    def finish(self) -> bytes:
        """The tail: pending CR, a CRLF if the last line lacked one, ".CRLF"."""
        tail = b""
        if self._has_pending_cr:
            tail = b"\r"
            self._has_pending_cr = False
            self._is_line_start = False
        if not self._is_line_start:
            tail += b"\r\n"
            self._is_line_start = True
        return tail + b".\r\n"


def served_size(data: bytes) -> int:
    """Octets of `data` as served before stuffing: CRLF lines, final CRLF."""
    bare_lf = data.count(b"\n")
    if b"\r" in data:
        bare_lf -= data.count(b"\r\n")
    size = len(data) + bare_lf
    if data and not data.endswith(b"\n"):
        size += 2
    return size


def encode_message(data: bytes) -> bytes:
    """The whole multi-line body for `data`, terminator included."""
    stuffer = DotStuffer()
    return stuffer.feed(data) + stuffer.finish()
