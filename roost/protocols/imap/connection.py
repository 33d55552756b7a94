"""The sans-IO IMAP server core: bytes in, commands out.

Three doors: ``receive_data(bytes)`` (``b""`` when the peer closed),
``next_event()`` (a ``Command``, ``IdleDone``, ``AuthResponse``,
``ConnectionClosed`` or None for "need more data"), and
``data_to_send()`` (continuation requests and the BAD/NO replies the core
gives by itself).

How it works.  Input is cut into lines.  A line that ends in a literal
announcement ``{n}`` or ``{n+}`` (RFC 3501 4.3, RFC 7888) makes the core
check ``n`` against the limit for the command and state, queue a ``+``
continuation for a synchronizing literal, and then take exactly ``n``
octets as they arrive; nothing is allocated from the announced count
(case 016).  A refused non-synchronizing literal is read and thrown away
so the stream stays in step.  When a line ends without an announcement
the command is complete: it is tokenised, checked against the state table
and handed out typed.  A command that fails any of this is answered by the
core (tagged BAD or NO) and never reaches the service.

Modes: the service calls ``start_idle()`` after IDLE (the next line must
be ``DONE``) and ``expect_auth_response()`` during AUTHENTICATE (the next
line is a SASL response).  After ``close()`` the core refuses all input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from roost.protocols.imap.commands import (
    Command,
    build_command,
    parse_command,
    read_tag,
)
from roost.protocols.imap.errors import ImapError, Status
from roost.protocols.imap.lexer import literal_at_end
from roost.protocols.imap.state import LEGAL_STATES, State, is_legal


@dataclass(frozen=True, slots=True)
class Limits:
    max_line_bytes: int = 64 * 1024
    # before login only LOGIN/AUTHENTICATE take literals: small ones
    max_literal_preauth_bytes: int = 8 * 1024
    max_literal_bytes: int = 64 * 1024
    max_append_bytes: int = 64 * 1024 * 1024
    max_command_bytes: int = 1024 * 1024
    max_auth_response_bytes: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The line that ended IDLE; ``is_done`` is false for anything but DONE."""

    is_done: bool


@dataclass(frozen=True, slots=True)
class AuthResponse:
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    pass


Event = Command | IdleDone | AuthResponse | ConnectionClosed


class Mode(Enum):
    COMMAND = "command"
    IDLE = "idle"
    AUTH = "auth"
    CLOSED = "closed"


CONTINUATION = b"+ Ready for literal data\r\n"


class ServerConnection:
    """One IMAP server session's parser and state holder."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.state = State.NOT_AUTHENTICATED
        self._mode = Mode.COMMAND
        self._buffer = bytearray()
        self._out = bytearray()
        self._eof = False
        self._segments: list[bytes] = []
        self._command_bytes = 0
        self._literal_left = 0
        self._literal = bytearray()
        self._discard_error: ImapError | None = None
        # BAD replies the core gave, for the service's invalid-command
        # limit: malformed commands, and malformed literal announcements
        self.bad_commands = 0
        self.bad_literals = 0

    # --- the three doors -------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif self._mode is not Mode.CLOSED:
            self._buffer += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        """Return the next event, or None when more data is needed."""
        while self._mode is not Mode.CLOSED:
            if self._literal_left and not self._take_literal():
                return ConnectionClosed() if self._eof else None
            if self._literal_left:
                continue
            line = self._take_line()
            if line is None:
                return ConnectionClosed() if self._eof else None
            event = self._on_line(line)
            if event is not None:
                return event
        return None

    # --- modes the service sets -----------------------------------------

    def start_idle(self) -> None:
        self._mode = Mode.IDLE

    def expect_auth_response(self) -> None:
        self._mode = Mode.AUTH

    def end_mode(self) -> None:
        if self._mode is not Mode.CLOSED:
            self._mode = Mode.COMMAND

    def close(self) -> None:
        """Refuse all further input (after BYE or LOGOUT)."""
        self._mode = Mode.CLOSED
        self._buffer.clear()

    def discard_input(self) -> None:
        """Drop buffered bytes: after STARTTLS nothing sent in plaintext
        may be read as a command (RFC 3501 6.2.1, case 003)."""
        self._buffer.clear()

    @property
    def has_buffered_input(self) -> bool:
        return bool(self._buffer)

    @property
    def is_closed(self) -> bool:
        """True after ``close()`` or a fatal error (BYE queued): the
        service sends what is queued and ends the session."""
        return self._mode is Mode.CLOSED

    # --- framing ---------------------------------------------------------

    def _take_literal(self) -> bool:
        """Move literal octets from the buffer; False when none arrived."""
        if not self._buffer:
            return False
        chunk = self._buffer[: self._literal_left]
        del self._buffer[: len(chunk)]
        self._literal_left -= len(chunk)
        if self._discard_error is None:
            self._literal += chunk
        if not self._literal_left and self._discard_error is None:
            self._segments.append(bytes(self._literal))
            self._literal.clear()
        return True

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        limit = self.limits.max_line_bytes
        if end < 0:
            if len(self._buffer) > limit:
                self._fail(ImapError.bye("Line too long"))
            return None
        if end > limit:
            self._fail(ImapError.bye("Line too long"))
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        # RFC 3501 2.2: lines end in CRLF; a bare LF is taken as well
        return line[:-1] if line.endswith(b"\r") else line

    def _fail(self, error: ImapError) -> None:
        self._out += error.response(None)
        self.close()

    def _on_line(self, line: bytes) -> Event | None:
        if self._mode is Mode.IDLE:
            self._mode = Mode.COMMAND
            return IdleDone(line.upper() == b"DONE")
        if self._mode is Mode.AUTH:
            self._mode = Mode.COMMAND
            if len(line) > self.limits.max_auth_response_bytes:
                return AuthResponse(b"*")
            return AuthResponse(line)
        return self._on_command_line(line)

    def _on_command_line(self, line: bytes) -> Event | None:
        if self._discard_error is None or not self._segments:
            self._segments.append(line)
        self._command_bytes += len(line)
        try:
            announced = literal_at_end(line)
        except ImapError as error:
            if error.status is Status.BAD:
                self.bad_literals += 1
            self._reject(error)
            return None
        if announced is None:
            return self._complete()

        if self._discard_error is not None:
            if announced.is_synchronizing:
                self._reject(self._discard_error)
                return None
            self._literal_left = announced.count
            return None
        limit = self._literal_limit()
        too_big = announced.count > limit
        too_long = self._command_bytes + announced.count > self._command_limit()
        if too_big or too_long:
            refusal = ImapError.no("Literal too large", "TOOBIG")
            if announced.is_synchronizing:
                self._reject(refusal)
                return None
            # LITERAL+: the client sends the data anyway; read and drop it
            self._discard_error = refusal
        elif announced.is_synchronizing:
            self._out += CONTINUATION
        self._command_bytes += announced.count
        self._literal_left = announced.count
        if announced.count == 0 and self._discard_error is None:
            self._segments.append(b"")
        return None

    def _verb(self) -> str:
        words = self._segments[0].split(b" ", 3)
        verb = words[1].upper() if len(words) > 1 else b""
        if verb == b"UID" and len(words) > 2:
            verb = words[2].upper()
        return verb.decode("ascii", "replace")

    def _literal_limit(self) -> int:
        if self.state is State.NOT_AUTHENTICATED:
            return self.limits.max_literal_preauth_bytes
        if self._verb() == "APPEND":
            return self.limits.max_append_bytes
        return self.limits.max_literal_bytes

    def _command_limit(self) -> int:
        if self._verb() == "APPEND" and self.state is not State.NOT_AUTHENTICATED:
            return self.limits.max_append_bytes + self.limits.max_command_bytes
        return self.limits.max_command_bytes

    def _reject(self, error: ImapError) -> None:
        tag = read_tag(self._segments) if self._segments else None
        self._out += error.response(tag)
        self._reset_command()

    def _reset_command(self) -> None:
        self._segments = []
        self._command_bytes = 0
        self._literal.clear()
        self._literal_left = 0
        self._discard_error = None

    def _complete(self) -> Event | None:
        if self._discard_error is not None:
            self._reject(self._discard_error)
            return None
        segments = self._segments
        self._reset_command()
        if segments == [b""]:
            return None  # an empty line is ignored, as most servers do
        tag = read_tag(segments)
        try:
            tag_text, verb, uid, args = parse_command(segments)
            if not is_legal(verb, self.state):
                known = verb in LEGAL_STATES
                text = "Command not valid in this state" if known else None
                raise ImapError.bad(text or "Unknown command")
            return build_command(tag_text, verb, uid, args)
        except ImapError as error:
            if error.status is Status.BAD:
                self.bad_commands += 1
            self._out += error.response(tag)
            return None
