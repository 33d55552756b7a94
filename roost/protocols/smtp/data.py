"""The DATA phase: from wire octets to the message, and where it ends.

Only `<CRLF>.<CRLF>` ends the data (RFC 5321 4.1.1.4, 2.3.8): a "."
line counts only when it ends in CRLF and so did the line before it,
so `<LF>.<CRLF>`, `<LF>.<LF>` and `<CRLF>.<LF>` are message text (the
SMTP smuggling fault, case 001). Lines that end in a lone LF are kept
and normalised to CRLF, as postfix 3.9 does with
`smtpd_forbid_bare_newline = normalize`; a stray CR inside a line
becomes a space, as postfix's `cleanup_replace_stray_cr_lf`, so no
bare CR or LF ever reaches the queue or a next hop.

Leading dots are removed (RFC 5321 4.5.2). The size is counted as
octets arrive; past `max_bytes` nothing more is kept (case 011), but
the reader goes on looking for the end so that the one reply comes
after it (RFC 5321 4.2.5). A line longer than `MAX_PARTIAL_BYTES` is
passed through in pieces, so no line needs unbounded memory (case 004).
"""

from __future__ import annotations

# A line piece this long is stored before its LF arrives (case 004).
MAX_PARTIAL_BYTES = 16 * 1024


class DataReader:
    """Consumes message octets from a buffer until the end of data."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.is_too_big = False
        self.has_nul = False
        self.has_bare_lf = False
        self._out = bytearray()
        self._at_line_start = True
        # the line before ended in CRLF; the start of data counts as one
        self._prev_crlf = True

    @property
    def message(self) -> bytes:
        return bytes(self._out)

    def feed(self, buf: bytearray) -> bool:
        """Take what it can from buf; True once the end of data was
        seen (buf then starts with what followed it)."""
        pos = 0
        while True:
            pos = self._take_clean_lines(buf, pos)
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            line = bytes(buf[pos : nl + 1])
            pos = nl + 1
            if self._take_line(line):
                del buf[:pos]
                return True
        pos = self._take_partial(buf, pos)
        del buf[:pos]
        return False

    def _take_clean_lines(self, buf: bytearray, pos: int) -> int:
        """Fast path: whole CRLF lines with no dot, CR, LF or NUL to
        treat, stored in one piece."""
        if not (self._at_line_start and self._prev_crlf):
            return pos
        last = buf.rfind(b"\n", pos)
        if last < 0:
            return pos
        region = bytes(buf[pos : last + 1])
        if region[:1] == b"." or b"\n." in region or b"\x00" in region:
            return pos
        crlf = region.count(b"\r\n")
        if region.count(b"\n") != crlf or region.count(b"\r") != crlf:
            return pos
        self._store(region)
        return last + 1

    def _take_line(self, line: bytes) -> bool:
        crlf = line.endswith(b"\r\n")
        body = line[:-2] if crlf else line[:-1]
        if not crlf:
            self.has_bare_lf = True
        if self._at_line_start:
            if body == b"." and crlf and self._prev_crlf:
                return True
            # RFC 5321 4.5.2: drop the first "." when others follow
            if body[:1] == b"." and len(body) > 1:
                body = body[1:]
        self._store_text(body)
        self._store(b"\r\n")
        self._prev_crlf = crlf
        self._at_line_start = True
        return False

    def _take_partial(self, buf: bytearray, pos: int) -> int:
        """Store the start of a long unfinished line; keep a final CR,
        which may be half of the CRLF."""
        pending = len(buf) - pos
        if pending <= MAX_PARTIAL_BYTES:
            return pos
        end = len(buf) - 1 if buf[-1] == 0x0D else len(buf)
        piece = bytes(buf[pos:end])
        if self._at_line_start and piece[:1] == b".":
            piece = piece[1:]
        self._store_text(piece)
        self._at_line_start = False
        return end

    def _store_text(self, text: bytes) -> None:
        if b"\x00" in text:
            self.has_nul = True
        if b"\r" in text:
            text = text.replace(b"\r", b" ")
        self._store(text)

    def _store(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.is_too_big:
            return
        if self.max_bytes and self.size > self.max_bytes:
            self.is_too_big = True
            self._out = bytearray()
            return
        self._out += chunk
