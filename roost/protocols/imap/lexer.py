"""Turn one framed IMAP command into tokens.

The framer (``connection.py``) hands over a command as *segments*: line,
literal, line, literal, ..., line.  Every line but the last ends in a
literal announcement ``{n}`` or ``{n+}`` whose data is the next segment.

Tokens are atoms (7-bit text; a ``[...]`` section may hold spaces,
parentheses and quoted strings, so ``BODY[HEADER.FIELDS (A B)]<0.10>`` is
one atom), strings (quoted or literal, as bytes) and parenthesized lists.
The grammar of each command then reads the tokens (``commands.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roost.protocols.imap.errors import ImapError

MAX_LITERAL_COUNT = 4_294_967_295  # RFC 3501 9: number is unsigned 32-bit
_LITERAL_AT_END = re.compile(rb"\{([0-9]+)(\+?)\}\Z")
_ATOM_STOP = frozenset(b' (){"')
MAX_LIST_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Atom:
    value: str


@dataclass(frozen=True, slots=True)
class String:
    value: bytes
    is_literal: bool = False


@dataclass(frozen=True, slots=True)
class PList:
    items: tuple[Token, ...]


Token = Atom | String | PList


@dataclass(frozen=True, slots=True)
class LiteralAnnouncement:
    count: int
    is_synchronizing: bool


def literal_at_end(line: bytes) -> LiteralAnnouncement | None:
    """Say whether ``line`` ends in a literal announcement outside a quote.

    Raises ``ImapError`` BAD for a malformed count: ``{}``, ``{-1}``,
    ``{ 5}``, ``{+5}``, non-ASCII digits, or a value above 2^32-1
    (case 016; RFC 3501 9 ``literal``).
    """
    if not line.endswith(b"}") or _ends_inside_quote(line):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    match = _LITERAL_AT_END.match(line, start)
    if match is None:
        raise ImapError.bad("Invalid literal")
    digits = match.group(1)
    if len(digits) > 10 or int(digits) > MAX_LITERAL_COUNT:
        raise ImapError.bad("Literal too large")
    return LiteralAnnouncement(int(digits), not match.group(2))


def _ends_inside_quote(line: bytes) -> bool:
    inside = False
    i = 0
    while i < len(line):
        byte = line[i]
        if inside and byte == 0x5C:  # backslash escapes the next octet
            i += 2
            continue
        if byte == 0x22:
            inside = not inside
        i += 1
    return inside


class Lexer:
    """Reads tokens from the segments of one command."""

    def __init__(self, segments: list[bytes]) -> None:
        self._segments = segments
        self._index = 0
        self._pos = 0

    @property
    def _line(self) -> bytes:
        return self._segments[self._index]

    def at_end(self) -> bool:
        return self._index == len(self._segments) - 1 and self._pos >= len(self._line)

    def read_word(self) -> str:
        """Read the tag or command name: text up to the next space."""
        line = self._line
        end = line.find(b" ", self._pos)
        if end < 0:
            end = len(line)
        word = line[self._pos : end]
        if not word or not word.isascii() or b"{" in word or b'"' in word:
            raise ImapError.bad("Invalid command syntax")
        self._pos = end
        return word.decode("ascii")

    def skip_space(self) -> None:
        if self._pos < len(self._line) and self._line[self._pos] == 0x20:
            self._pos += 1
        else:
            raise ImapError.bad("Missing space")

    def read_tokens(self) -> list[Token]:
        """Read the rest of the command: space-separated tokens."""
        tokens: list[Token] = []
        while not self.at_end():
            self.skip_space()
            if self.at_end():
                break  # tolerate one trailing space, as many servers do
            tokens.append(self._read_token(0))
        return tokens

    def _read_token(self, depth: int) -> Token:
        line = self._line
        if self._pos >= len(line):
            raise ImapError.bad("Missing argument")
        byte = line[self._pos]
        if byte == 0x28:  # '('
            return self._read_list(depth + 1)
        if byte == 0x22:
            return String(self._read_quoted())
        if byte == 0x7B:  # '{'
            return String(self._read_literal(), is_literal=True)
        return Atom(self._read_atom())

    def _read_list(self, depth: int) -> PList:
        if depth > MAX_LIST_DEPTH:
            raise ImapError.bad("Too deeply nested list")
        self._pos += 1
        items: list[Token] = []
        while True:
            line = self._line
            if self._pos >= len(line):
                raise ImapError.bad("Missing closing parenthesis")
            if line[self._pos] == 0x29:  # ')'
                self._pos += 1
                return PList(tuple(items))
            if items:
                self.skip_space()
            items.append(self._read_token(depth))

    def _read_quoted(self) -> bytes:
        line = self._line
        out = bytearray()
        i = self._pos + 1
        while i < len(line):
            byte = line[i]
            if byte == 0x22:
                self._pos = i + 1
                return bytes(out)
            if byte == 0x5C:
                # RFC 3501 9: "\" may only precede DQUOTE or "\" (case 018)
                if i + 1 >= len(line) or line[i + 1] not in b'"\\':
                    raise ImapError.bad("Invalid escape in quoted string")
                out.append(line[i + 1])
                i += 2
                continue
            if byte in (0x00, 0x0D):
                raise ImapError.bad("Invalid characters in string")
            out.append(byte)
            i += 1
        raise ImapError.bad("Missing closing quote")

    def _read_literal(self) -> bytes:
        announced = literal_at_end(self._line[self._pos :])
        if announced is None or self._index + 2 >= len(self._segments):
            raise ImapError.bad("Invalid literal")
        data = self._segments[self._index + 1]
        if b"\x00" in data:
            raise ImapError.bad("NUL in literal")  # CHAR8 excludes NUL
        self._index += 2
        self._pos = 0
        return data

    def _read_atom(self) -> str:
        line = self._line
        start = i = self._pos
        while i < len(line) and line[i] not in _ATOM_STOP:
            if line[i] == 0x5B:  # '[' opens a section: read to its ']'
                i = self._section_end(line, i)
                continue
            if line[i] < 0x21 or line[i] > 0x7E:
                raise ImapError.bad("Invalid characters in atom")
            i += 1
        if i == start:
            raise ImapError.bad("Invalid argument")
        self._pos = i
        return line[start:i].decode("ascii")

    @staticmethod
    def _section_end(line: bytes, i: int) -> int:
        inside_quote = False
        i += 1
        while i < len(line):
            byte = line[i]
            if byte < 0x20 or byte > 0x7E:
                raise ImapError.bad("Invalid characters in section")
            if inside_quote and byte == 0x5C:
                i += 2
                continue
            if byte == 0x22:
                inside_quote = not inside_quote
            elif byte == 0x5D and not inside_quote:
                return i + 1
            i += 1
        raise ImapError.bad("Missing closing bracket")
