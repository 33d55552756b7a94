"""BDAT chunks (RFC 3030 CHUNKING): from counted octets to the message.

A BDAT chunk is exactly `count` octets after the command line, with no
dot-stuffing and no end marker (RFC 3030 2). The octets are still a
7BIT or 8BITMIME message (BINARYMIME is not offered), so its line ends
are made the same as the DATA path makes them (data.py): CRLF stays,
a lone LF becomes CRLF (`has_bare_lf`), a lone CR becomes a space. A
CR that ends one chunk is held until the next shows whether an LF
follows it. A message that does not end with a line end gets a CRLF,
as every message queued from DATA has one.

Octets past `max_bytes` are counted but not kept, so a client cannot
make the core hold more than the limit (RFC 1870 6.3, case 011), and
the one refusal comes after the LAST chunk.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class ChunkCollector:
    """The message of one BDAT transaction, chunk by chunk."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.is_too_big = False
        self.has_nul = False
        self.has_bare_lf = False
        self._out = bytearray()
        self._held_cr = False

    @property
    def message(self) -> bytes:
        return bytes(self._out)

    def feed(self, octets: bytes) -> None:
        """Take the next piece of chunk content (any split)."""
        if not octets:
            return
        if self._held_cr:
            octets = b"\r" + octets
            self._held_cr = False
        if octets.endswith(b"\r"):
            octets = octets[:-1]
            self._held_cr = True
        if b"\x00" in octets:
            self.has_nul = True
        self._store(self._normalise(octets))

    def finish(self) -> None:
        """The LAST chunk is in: settle a held CR and the final CRLF."""
        if self._held_cr:
            self._held_cr = False
            self._store(b" ")
        if self.size and not self._out.endswith(b"\r\n") and not self.is_too_big:
            self._store(b"\r\n")

    def _normalise(self, octets: bytes) -> bytes:
        cr = octets.count(b"\r")
        lf = octets.count(b"\n")
        if cr == lf == octets.count(b"\r\n"):
            return octets
        return _LINE_END.sub(self._line_end, octets)

    def _line_end(self, match: re.Match[bytes]) -> bytes:
        found = match.group()
        if found == b"\n":
            self.has_bare_lf = True
            return b"\r\n"
        return b"\r\n" if found == b"\r\n" else b" "

    def _store(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.is_too_big:
            return
        if self.max_bytes and self.size > self.max_bytes:
            self.is_too_big = True
            self._out = bytearray()
            return
        self._out += chunk
