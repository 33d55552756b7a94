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
        seen (buf then starts with what followed it).

        Linear in len(buf), which is cut once at the end. The usual
        case, whole CRLF lines with no other CR or LF up to the end of
        data (or of buf), is taken in one slice, dots removed in one
        pass (`_take_clean_run`). Otherwise runs of lines that start
        with no "." are taken a slice each (`_take_lines`), and lines
        that start with "." (or finish one begun earlier) one by one.
        """
        end = buf.rfind(b"\n") + 1  # whole lines are buf[:end]
        pos = 0
        may_run = True
        while pos < end:
            if self._at_line_start and self._prev_crlf and may_run:
                # Once per call: a failed try is not repeated, as it
                # would scan the same bytes again.
                may_run = False
                taken = self._take_clean_run(buf, pos, end)
                if taken < 0:
                    del buf[:-taken]
                    return True
                if taken > pos:
                    pos = taken
                    continue
            if self._at_line_start and buf[pos] != 0x2E:  # "."
                dot = buf.find(b"\n.", pos, end)
                stop = end if dot < 0 else dot + 1
                self._take_lines(buf, pos, stop)
                pos = stop
                continue
            nl = buf.find(b"\n", pos, end)
            line = bytes(buf[pos : nl + 1])
            pos = nl + 1
            if self._take_line(line):
                del buf[:pos]
                return True
        pos = self._take_partial(buf, pos)
        del buf[:pos]
        return False

    def _take_clean_run(self, buf: bytearray, start: int, end: int) -> int:
        """Fast path from a line start after a CRLF line: the lines of
        buf[start:end] before the end-of-data line, when they all end
        in CRLF and hold no other CR or LF. Stores them, dot-unstuffed;
        returns where they stop, or -(the offset after ".CRLF") when the
        end of data was reached, or `start` when the run is not clean.
        """
        if buf.startswith(b".\r\n", start):
            return -(start + 3)
        dot = buf.find(b"\n.", start, end)
        term = -1 if dot < 0 else buf.find(b"\r\n.\r\n", max(dot - 1, start), end)
        stop = end if term < 0 else term + 2
        crlf = buf.count(b"\r\n", start, stop)
        if not buf.count(b"\n", start, stop) == crlf == buf.count(b"\r", start, stop):
            return start
        if buf.find(b"\x00", start, stop) >= 0:
            self.has_nul = True
        # No line of the run is "." alone (the first such ends the data),
        # so every line that starts with "." loses that dot (RFC 5321 4.5.2).
        if buf[start] == 0x2E:
            self._store(bytes(buf[start + 1 : stop]).replace(b"\n.", b"\n"))
        elif 0 <= dot < stop:
            self._store(bytes(buf[start:stop]).replace(b"\n.", b"\n"))
        else:
            with memoryview(buf) as view:
                self._store(view[start:stop])
        return stop if term < 0 else -(stop + 3)

    def _take_lines(self, buf: bytearray, start: int, stop: int) -> None:
        """Store the whole lines buf[start:stop], none of which starts
        with "." and the first of which starts a line: as they are when
        all end in CRLF with no other CR, else with each bare LF made
        CRLF and each stray CR a space, as `_take_line` does."""
        if buf.find(b"\x00", start, stop) >= 0:
            self.has_nul = True
        crlf = buf.count(b"\r\n", start, stop)
        with memoryview(buf) as view:
            if buf.count(b"\n", start, stop) == crlf == buf.count(b"\r", start, stop):
                self._store(view[start:stop])
                self._prev_crlf = True
                return
            region = bytes(view[start:stop])
        if region.count(b"\n") != crlf:
            self.has_bare_lf = True
        # Every CRLF ends a line: take them out, blank the CRs left
        # (stray ones), and end every line in CRLF again.
        text = region.replace(b"\r\n", b"\n").replace(b"\r", b" ")
        self._store(text.replace(b"\n", b"\r\n"))
        self._prev_crlf = region.endswith(b"\r\n")

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

    def _store(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.is_too_big:
            return
        if self.max_bytes and self.size > self.max_bytes:
            self.is_too_big = True
            self._out = bytearray()
            return
        self._out += chunk
