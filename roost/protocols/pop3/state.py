"""The POP3 server core: lines in, events out, no I/O.

How it works. The service feeds received bytes to `receive_data` (b""
when the peer closed) and pulls events with `next_event`, which returns
None when it needs more bytes and raises `Pop3Error` for input it
refuses; the command loop sends that error and, unless it is fatal,
carries on. Replies are built by the service with `reply.py`; the few
that change state are methods here (`stls_ok`, `sasl_challenge`,
`logged_in`, `auth_failure`).

States (RFC 1939 §3): AUTHORIZATION, then TRANSACTION after a login,
then UPDATE after QUIT; CLOSED after QUIT in AUTHORIZATION, after a
fatal error or at end of input. Which verb is legal in which state is
the `LEGAL_VERBS` table; a verb missing there gets `-ERR`. Inside
AUTHORIZATION two sub-modes change how the next line is read: after
`AUTH mech` without an initial response the next line is a SASL
response (RFC 5034 §4), and after STLS nothing is read until the
service says TLS is up (RFC 2595 §4; case 003: plaintext pipelined
after STLS is discarded, never executed).

The core knows nothing of mailboxes: whether message 7 exists is the
service's question. It knows the line grammar, the limits (RFC 2449 §4:
255 octets per command line) and the counters of bad commands and
failed logins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum

from roost.protocols.pop3 import events as ev
from roost.protocols.pop3.reply import (
    Pop3Error,
    RespCode,
    continuation_line,
    multiline,
    ok_line,
)

# RFC 2449 §4: a command line is at most 255 octets including CRLF.
MAX_COMMAND_LINE_BYTES = 255
# RFC 5034 §4 leaves SASL response lines unbounded by the 255 rule; a
# PLAIN response of two 255-octet names and a long password fits here.
MAX_SASL_LINE_BYTES = 4096
# Dovecot closes after 20 bad commands; 10 is plenty for a real client.
MAX_BAD_COMMANDS = 10
# Failed logins per connection before we hang up (RFC 1939 §13 allows
# the server to close after a number of failures).
MAX_AUTH_FAILURES = 3

_NUMBER = re.compile(rb"[0-9]{1,10}")
_VERB = re.compile(rb"[A-Za-z]{1,40}")


class State(Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


LEGAL_VERBS: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset(
        {"USER", "PASS", "AUTH", "CAPA", "STLS", "QUIT"},
    ),
    State.TRANSACTION: frozenset(
        {
            "STAT",
            "LIST",
            "RETR",
            "DELE",
            "NOOP",
            "RSET",
            "QUIT",
            "TOP",
            "UIDL",
            "CAPA",
        },
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}


class Pop3Server:
    """Server side of one POP3 connection, as a state machine.

    `is_tls`: the connection is already encrypted (implicit TLS).
    `tls_available`: STLS may be offered on a plaintext connection.
    `plaintext_auth_allowed`: USER/PASS and AUTH PLAIN are accepted now
    (the service decides, as dovecot's disable_plaintext_auth does).
    """

    def __init__(
        self,
        *,
        is_tls: bool = False,
        tls_available: bool = True,
        plaintext_auth_allowed: bool = True,
        sasl_mechanisms: tuple[str, ...] = ("PLAIN",),
        max_bad_commands: int = MAX_BAD_COMMANDS,
        max_auth_failures: int = MAX_AUTH_FAILURES,
    ) -> None:
        self.state = State.AUTHORIZATION
        self.is_tls = is_tls
        self.tls_available = tls_available
        self.plaintext_auth_allowed = plaintext_auth_allowed
        self.sasl_mechanisms = sasl_mechanisms
        self.max_bad_commands = max_bad_commands
        self.max_auth_failures = max_auth_failures
        self.bad_commands = 0
        self.auth_failures = 0
        self._buffer = bytearray()
        self._is_eof = False
        self._is_discarding = False
        self._pending_user: str | None = None
        self._sasl_mechanism: str | None = None
        self._is_awaiting_tls = False

    # -- input ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Hand over bytes from the peer; b"" means the peer closed."""
        if not data:
            self._is_eof = True
        elif not self._is_awaiting_tls and self.state is not State.CLOSED:
            self._buffer += data

    def next_event(self) -> ev.Event | None:
        """The next command as an event, or None when more bytes are needed.

        Raises `Pop3Error` for a refused line: send it with
        `err.to_bytes()`, then close if `err.is_fatal`, else continue.
        """
        if self.state is State.CLOSED or self._is_awaiting_tls:
            return None
        if self.state is State.UPDATE:
            return None
        line = self._take_line()
        if line is None:
            if self._is_eof:
                self.state = State.CLOSED
                return ev.ConnectionClosed()
            return None
        if self._sasl_mechanism is not None:
            return self._sasl_line(line)
        return self._command(line)

    @property
    def is_closing(self) -> bool:
        """True once no further command will be read (UPDATE or CLOSED)."""
        return self.state in (State.UPDATE, State.CLOSED)

    def _take_line(self) -> bytes | None:
        limit = MAX_COMMAND_LINE_BYTES
        if self._sasl_mechanism is not None:
            limit = MAX_SASL_LINE_BYTES
        end = self._buffer.find(b"\n")
        if end < 0:
            # Keep the buffer bounded: drop an over-long line as it
            # arrives and answer it once its end comes.
            if len(self._buffer) > limit:
                self._is_discarding = True
                self._buffer.clear()
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._is_discarding or end + 1 > limit:
            self._is_discarding = False
            self._sasl_mechanism = None
            raise self._bad(Pop3Error("Line too long"))
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    # -- commands -------------------------------------------------------

    def _command(self, line: bytes) -> ev.Event:
        verb_bytes, _, rest = line.partition(b" ")
        if not _VERB.fullmatch(verb_bytes):
            raise self._bad(Pop3Error("Unknown command"))
        verb = verb_bytes.decode("ascii").upper()
        parser = _PARSERS.get(verb)
        if parser is None:
            raise self._bad(Pop3Error("Unknown command"))
        if verb not in LEGAL_VERBS[self.state]:
            raise self._bad(Pop3Error(f"{verb} not allowed now"))
        if b"\x00" in line:
            raise self._bad(Pop3Error("Invalid characters in command"))
        try:
            return parser(self, rest)
        except Pop3Error as err:
            raise self._bad(err) from None

    def _bad(self, err: Pop3Error) -> Pop3Error:
        self.bad_commands += 1
        if self.bad_commands >= self.max_bad_commands:
            self.state = State.CLOSED
            return Pop3Error("Too many bad commands", is_fatal=True)
        return err

    def _on_user(self, rest: bytes) -> ev.Event:
        self._require_plaintext_auth()
        name = _text_argument(rest, "USER needs a name")
        self._pending_user = name
        return ev.User(name)

    def _on_pass(self, rest: bytes) -> ev.Event:
        # RFC 1939 §7: PASS only right after a successful USER; spaces
        # in the argument are part of the password.
        self._require_plaintext_auth()
        if self._pending_user is None:
            raise Pop3Error("Send USER first")
        name, self._pending_user = self._pending_user, None
        password = _text_argument(rest, "PASS needs a password")
        return ev.Pass(name, password)

    def _on_auth(self, rest: bytes) -> ev.Event:
        args = rest.split()
        if not args:
            return ev.Auth(None, None)
        if len(args) > 2:
            raise Pop3Error("Syntax: AUTH mechanism [response]")
        mechanism = args[0].decode("ascii", "replace").upper()
        if mechanism not in self.sasl_mechanisms:
            raise Pop3Error("Unsupported authentication mechanism")
        self._require_plaintext_auth()
        self._pending_user = None
        if len(args) == 1:
            return ev.Auth(mechanism, None)
        # RFC 5034 §4: "=" is an initial response of zero length.
        initial = b"" if args[1] == b"=" else args[1]
        return ev.Auth(mechanism, initial)

    def _on_stls(self, rest: bytes) -> ev.Event:
        _no_arguments(rest, "STLS")
        if self.is_tls:
            raise Pop3Error("Already using TLS")
        if not self.tls_available:
            raise Pop3Error("STLS not available")
        # Read nothing more until the handshake is done (case 003).
        self._buffer.clear()
        self._is_awaiting_tls = True
        return ev.Stls()

    def _on_list(self, rest: bytes) -> ev.Event:
        return ev.List(_optional_msg(rest, "LIST"))

    def _on_uidl(self, rest: bytes) -> ev.Event:
        return ev.Uidl(_optional_msg(rest, "UIDL"))

    def _on_retr(self, rest: bytes) -> ev.Event:
        return ev.Retr(_msg_argument(rest, "RETR"))

    def _on_dele(self, rest: bytes) -> ev.Event:
        return ev.Dele(_msg_argument(rest, "DELE"))

    def _on_top(self, rest: bytes) -> ev.Event:
        args = rest.split()
        if len(args) != 2:
            raise Pop3Error("Syntax: TOP msg lines")
        return ev.Top(_msg_number(args[0]), _line_count(args[1]))

    def _on_quit(self, rest: bytes) -> ev.Event:
        _no_arguments(rest, "QUIT")
        if self.state is State.TRANSACTION:
            self.state = State.UPDATE
        else:
            self.state = State.CLOSED
        return ev.Quit()

    def _require_plaintext_auth(self) -> None:
        if not self.plaintext_auth_allowed:
            raise Pop3Error(
                "Plaintext authentication disallowed on non-secure connections",
                RespCode.AUTH,
            )

    # -- SASL -----------------------------------------------------------

    def sasl_challenge(self, mechanism: str, challenge_b64: bytes = b"") -> bytes:
        """The `+ challenge` line; the next client line is its response."""
        self._sasl_mechanism = mechanism
        return continuation_line(challenge_b64)

    def _sasl_line(self, line: bytes) -> ev.Event:
        mechanism, self._sasl_mechanism = self._sasl_mechanism or "", None
        # RFC 5034 §4: a lone "*" cancels; the server answers -ERR.
        if line == b"*":
            raise Pop3Error("Authentication aborted by client")
        return ev.SaslResponse(mechanism, line)

    def auth_failure(self, text: str = "Authentication failed") -> Pop3Error:
        """Count a failed login and return the error for the service to raise.

        The error is fatal once the connection used up its attempts.
        """
        self.auth_failures += 1
        if self.auth_failures >= self.max_auth_failures:
            self.state = State.CLOSED
            return Pop3Error(text, RespCode.AUTH, is_fatal=True)
        return Pop3Error(text, RespCode.AUTH)

    def logged_in(self) -> None:
        """The service authenticated the user and locked the maildrop."""
        self._pending_user = None
        self.state = State.TRANSACTION

    # -- STLS -----------------------------------------------------------

    def stls_ok(self) -> bytes:
        """The +OK to STLS; drops every byte the client sent after STLS.

        Case 003, RFC 2595 §4: until the handshake ends nothing may be
        read, and what was pipelined in plaintext is never executed.
        """
        self._buffer.clear()
        self._is_discarding = False
        self._pending_user = None
        self._is_awaiting_tls = True
        return ok_line("Begin TLS negotiation now")

    def tls_started(self, *, plaintext_auth_allowed: bool = True) -> None:
        """TLS is up: start AUTHORIZATION afresh (RFC 2595 §4)."""
        self._buffer.clear()
        self._is_awaiting_tls = False
        self.is_tls = True
        self.plaintext_auth_allowed = plaintext_auth_allowed

    # -- replies that depend on state -----------------------------------

    def greeting(self) -> bytes:
        """The banner; no APOP timestamp, since APOP is not offered."""
        return ok_line("Roost POP3 ready")

    def capabilities(self) -> bytes:
        """The multi-line CAPA reply for the current state (RFC 2449 §5)."""
        lines = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE"]
        lines += [b"PIPELINING"]
        if self.state is State.AUTHORIZATION:
            lines += self._authorization_capabilities()
        lines.append(b"IMPLEMENTATION Roost")
        return multiline(ok_line("Capability list follows"), lines)

    def _authorization_capabilities(self) -> list[bytes]:
        lines: list[bytes] = []
        if self.plaintext_auth_allowed:
            lines.append(b"USER")
            mechanisms = " ".join(self.sasl_mechanisms)
            lines.append(b"SASL " + mechanisms.encode("ascii"))
        if self.tls_available and not self.is_tls:
            lines.append(b"STLS")
        return lines

    def mechanism_list(self) -> bytes:
        """Reply to a bare AUTH: the mechanisms usable now, one a line."""
        lines: list[bytes] = []
        if self.plaintext_auth_allowed:
            lines = [m.encode("ascii") for m in self.sasl_mechanisms]
        return multiline(ok_line(), lines)


def _no_arguments(rest: bytes, verb: str) -> None:
    if rest.strip():
        raise Pop3Error(f"{verb} takes no arguments")


def _text_argument(rest: bytes, missing: str) -> str:
    if not rest:
        raise Pop3Error(missing)
    try:
        return rest.decode("utf-8")
    except UnicodeDecodeError:
        raise Pop3Error("Invalid UTF-8 in argument") from None


def _msg_number(arg: bytes) -> int:
    # Digits only: int() would also take "+1", "1_0" and Arabic digits.
    if not _NUMBER.fullmatch(arg) or int(arg) == 0:
        raise Pop3Error("Invalid message number")
    return int(arg)


def _line_count(arg: bytes) -> int:
    if not re.fullmatch(rb"[0-9]{1,20}", arg):
        raise Pop3Error("Invalid number of lines")
    return int(arg)


def _msg_argument(rest: bytes, verb: str) -> int:
    args = rest.split()
    if len(args) != 1:
        raise Pop3Error(f"Syntax: {verb} msg")
    return _msg_number(args[0])


def _optional_msg(rest: bytes, verb: str) -> int | None:
    if not rest.strip():
        return None
    return _msg_argument(rest, verb)


def _no_argument_event(
    verb: str,
    make: Callable[[], ev.Event],
) -> Callable[[Pop3Server, bytes], ev.Event]:
    def parse(server: Pop3Server, rest: bytes) -> ev.Event:
        _no_arguments(rest, verb)
        return make()

    return parse


_PARSERS: dict[str, Callable[[Pop3Server, bytes], ev.Event]] = {
    "USER": Pop3Server._on_user,
    "PASS": Pop3Server._on_pass,
    "AUTH": Pop3Server._on_auth,
    "STLS": Pop3Server._on_stls,
    "CAPA": _no_argument_event("CAPA", ev.Capa),
    "QUIT": Pop3Server._on_quit,
    "STAT": _no_argument_event("STAT", ev.Stat),
    "LIST": Pop3Server._on_list,
    "RETR": Pop3Server._on_retr,
    "DELE": Pop3Server._on_dele,
    "NOOP": _no_argument_event("NOOP", ev.Noop),
    "RSET": _no_argument_event("RSET", ev.Rset),
    "TOP": Pop3Server._on_top,
    "UIDL": Pop3Server._on_uidl,
}
