"""Sans-IO SMTP server core (RFC 5321 with ESMTP extensions).

Three doors: `receive_data(bytes)` takes what arrived (b"" when the
peer closed); `next_event()` returns the next event or NEED_DATA;
`send(reply)` answers the last event and returns the bytes to write.
No sockets, clocks, files or DNS in here.

States and what moves between them (replies decide, see `send`):

    CONNECTED --greeting 220--> INIT --250 to HELO/EHLO--> READY
    READY --250 to MAIL--> MAIL --250 to RCPT--> RCPT
    RCPT --354 to DATA--> DATA --end of data--> READY
    RCPT/BDAT --BDAT n--> CHUNK --n octets--> BDAT (or READY after LAST)
    READY --334 to AUTH--> AUTH --235 / failure--> READY
    READY --220 to STARTTLS--> TLS --tls_established()--> INIT
    any --221 / 421 / fatal refusal--> CLOSED

Which verb is legal in which state is the `_LEGAL` table; a verb used
out of order gets the reply of `_OUT_OF_ORDER` (503 5.5.1) and the
state stays. Command lines are limited to 512 octets (RFC 5321
4.5.3.1.4; AUTH lines 12288, RFC 4954 4): a longer line is answered
once with 500 5.5.0 and the rest of it is discarded as it arrives.

Pipelining (RFC 2920): before a 250 to EHLO, or after HELO, a client
may not send a command before reading the previous reply, and never
after EHLO, DATA, QUIT, NOOP, VRFY or HELO (3.1). Input found waiting
behind such a command is answered 554 5.5.0 and the session ends, as
postfix's smtpd_forbid_unauth_pipelining does (case 014). Plaintext
behind STARTTLS is dropped when the 220 is sent; its length is kept
in `discarded_after_starttls` (RFC 3207 4.2, case 003).

After 20 error replies the core adds 421 4.7.0 and closes (postfix's
smtpd_hard_error_limit).

CHUNKING (RFC 3030): `BDAT n [LAST]` is followed by exactly n octets,
read in the CHUNK state and collected by chunking.py (line ends made
as DATA makes them). A chunk that is not the LAST is the event
BdatChunk; the LAST one gives DataReceived(chunked=True) or the same
refusals as the end of DATA. A BDAT refused with a valid count (out of
order, after HELO) still has its octets skipped, so none of them is
read as a command (3: pipelined chunks after a failure are discarded);
a BDAT without a valid count leaves nothing to skip by, so it is
answered 501 and the session ends.

Envelope addresses: RFC 5321 4.1.2 wants `<path>`; like postfix with
strict_rfc821_envelopes = no (its default) the core also takes a bare
address up to the first space, `MAIL FROM:alice@example.org`, unless
made strict.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from roost.protocols.smtp import grammar, params
from roost.protocols.smtp.chunking import ChunkCollector
from roost.protocols.smtp.data import DataReader
from roost.protocols.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    BdatChunk,
    ConnectionClosed,
    Data,
    DataReceived,
    Ehlo,
    Event,
    Helo,
    MailFrom,
    NeedData,
    Noop,
    Quit,
    RcptTo,
    Refused,
    Rset,
    StartTls,
    Vrfy,
)
from roost.protocols.smtp.events import Help as HelpEvent
from roost.protocols.smtp.reply import (
    ALREADY_AUTHENTICATED,
    BAD_CHARACTER,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    EMPTY_COMMAND,
    IN_BDAT,
    IN_TRANSACTION,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    NEED_HELO,
    NEED_MAIL,
    NEED_RCPT,
    NESTED_MAIL,
    NO_ARGUMENTS,
    NOT_IMPLEMENTED,
    NUL_IN_DATA,
    SYNCHRONIZATION,
    SYNTAX_AUTH,
    SYNTAX_BDAT,
    SYNTAX_EHLO,
    SYNTAX_HELO,
    SYNTAX_MAIL,
    SYNTAX_RCPT,
    SYNTAX_VRFY,
    TLS_ACTIVE,
    UNKNOWN_COMMAND,
    Reply,
    SmtpError,
)

# RFC 5321 4.5.3.1.4: a command line is at most 512 octets with CRLF.
MAX_COMMAND_LINE_BYTES = 512
# RFC 4954 4: AUTH lines and SASL responses may reach 12288 octets.
MAX_AUTH_LINE_BYTES = 12288
# postfix's smtpd_hard_error_limit
MAX_ERRORS = 20


class State(enum.Enum):
    CONNECTED = "connected"
    INIT = "init"
    READY = "ready"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    CHUNK = "chunk"
    BDAT = "bdat"
    AUTH = "auth"
    TLS = "tls"
    CLOSED = "closed"


class UsageError(Exception):
    """The service used the core out of order (our bug, not the peer's)."""


_S = State
_COMMAND_STATES = frozenset({_S.INIT, _S.READY, _S.MAIL, _S.RCPT})
_BETWEEN_CHUNKS = _COMMAND_STATES | {_S.BDAT}
_LEGAL: dict[str, frozenset[State]] = {
    "HELO": _COMMAND_STATES,
    "EHLO": _COMMAND_STATES,
    "MAIL": frozenset({_S.READY}),
    "RCPT": frozenset({_S.MAIL, _S.RCPT}),
    "DATA": frozenset({_S.RCPT}),
    "BDAT": frozenset({_S.RCPT, _S.BDAT}),
    "RSET": _BETWEEN_CHUNKS,
    "NOOP": _BETWEEN_CHUNKS,
    "QUIT": _BETWEEN_CHUNKS,
    "VRFY": _COMMAND_STATES,
    "HELP": _BETWEEN_CHUNKS,
    "STARTTLS": frozenset({_S.READY}),
    "AUTH": frozenset({_S.READY}),
    "EXPN": _COMMAND_STATES,
}
_OUT_OF_ORDER: dict[str, dict[State, Reply]] = {
    "MAIL": {_S.INIT: NEED_HELO, _S.MAIL: NESTED_MAIL, _S.RCPT: NESTED_MAIL},
    "RCPT": {_S.INIT: NEED_MAIL, _S.READY: NEED_MAIL},
    "DATA": {_S.INIT: NEED_RCPT, _S.READY: NEED_RCPT, _S.MAIL: NEED_RCPT},
    "BDAT": {_S.INIT: NEED_RCPT, _S.READY: NEED_RCPT, _S.MAIL: NEED_RCPT},
    "STARTTLS": {_S.INIT: NEED_HELO, _S.MAIL: IN_TRANSACTION, _S.RCPT: IN_TRANSACTION},
    "AUTH": {_S.INIT: NEED_HELO, _S.MAIL: IN_TRANSACTION, _S.RCPT: IN_TRANSACTION},
}
# RFC 2920 3.1: these end a group; nothing may follow before the reply
_LAST_IN_GROUP = frozenset({"HELO", "EHLO", "DATA", "QUIT", "NOOP", "VRFY", "EXPN"})


class ServerConnection:
    """One SMTP session as the server sees it."""

    def __init__(
        self,
        *,
        hostname: str,
        max_message_bytes: int = 0,
        max_errors: int = MAX_ERRORS,
        forbid_unauth_pipelining: bool = True,
        is_tls: bool = False,
        strict_rfc821_envelopes: bool = False,
    ) -> None:
        self.hostname = hostname
        self.strict_rfc821_envelopes = strict_rfc821_envelopes
        self.max_message_bytes = max_message_bytes
        self.max_errors = max_errors
        self.forbid_unauth_pipelining = forbid_unauth_pipelining
        self.state = State.CONNECTED
        self.is_tls = is_tls
        self.is_authenticated = False
        self.may_pipeline = False
        self.is_smtputf8 = False
        self.error_count = 0
        self.discarded_after_starttls = 0
        self._buf = bytearray()
        self._eof = False
        self._pregreet = False
        self._discarding = False
        self._outstanding: Event | None = None
        self._reader: DataReader | None = None
        self._chunks: ChunkCollector | None = None
        # octets left of the BDAT chunk being read, and whether LAST
        self._chunk_left = 0
        self._chunk_size = 0
        self._chunk_last = False
        # octets of a refused BDAT chunk still to be thrown away
        self._skip = 0

    # door 1: bytes in --------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Hand over what arrived; b"" means the peer closed."""
        if self.state is State.CLOSED or self._eof:
            return
        if not data:
            self._eof = True
            return
        if self.state is State.CONNECTED:
            self._pregreet = True
        self._buf += data

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    # door 2: events out ------------------------------------------------

    def next_event(self) -> Event | NeedData:
        """The next event, NEED_DATA, or ConnectionClosed at the end."""
        if self._outstanding is not None:
            raise UsageError("answer the previous event with send() first")
        if self.state is State.CLOSED:
            return ConnectionClosed()
        if self.state in (State.CONNECTED, State.TLS):
            return NEED_DATA
        if self.state is State.DATA:
            event = self._next_data_event()
        elif self.state is State.CHUNK:
            event = self._next_chunk_event()
        else:
            event = self._next_line_event()
        if isinstance(event, NeedData):
            if self._eof:
                self.state = State.CLOSED
                return ConnectionClosed()
            return NEED_DATA
        self._outstanding = event
        return event

    # door 3: replies out -----------------------------------------------

    def send(self, reply: Reply) -> bytes:
        """Answer the outstanding event (or greet); returns the bytes.

        A 421 may be sent at any time (timeout, shutdown) and closes.
        """
        event, self._outstanding = self._outstanding, None
        if event is None:
            self._greet_or_close(reply)
        else:
            self._apply(event, reply)
        out = reply.to_bytes()

        if reply.code >= 400:
            self.error_count += 1
        if reply.code == 421:
            self.state = State.CLOSED
        if self.state is not State.CLOSED and self.error_count >= self.max_errors:
            too_many = Reply.of(421, "4.7.0", f"{self.hostname} Error: too many errors")
            out += too_many.to_bytes()
            self.state = State.CLOSED
        return out

    def tls_established(self) -> None:
        """The handshake after STARTTLS is done: start over (RFC 3207
        4.2); the client must send EHLO again."""
        if self.state is not State.TLS:
            raise UsageError("tls_established() without an accepted STARTTLS")
        self.is_tls = True
        self.is_authenticated = False
        self.may_pipeline = False
        self.state = State.INIT

    @property
    def is_closed(self) -> bool:
        return self.state is State.CLOSED

    # state changes -----------------------------------------------------

    def _greet_or_close(self, reply: Reply) -> None:
        if self.state is State.CONNECTED:
            self.state = State.INIT if reply.code == 220 else State.CLOSED
        elif reply.code != 421:
            raise UsageError("a reply without an event to answer")

    def _apply(self, event: Event, reply: Reply) -> None:
        ok = reply.is_positive
        if isinstance(event, Helo | Ehlo) and ok:
            self.state = State.READY
            self.is_smtputf8 = False
            self.may_pipeline = isinstance(event, Ehlo)
        elif isinstance(event, MailFrom) and ok:
            self.state = State.MAIL
            self.is_smtputf8 = event.params.smtputf8
        elif isinstance(event, RcptTo) and ok:
            self.state = State.RCPT
        elif isinstance(event, Data) and reply.code == 354:
            self.state = State.DATA
            self._reader = DataReader(self.max_message_bytes)
        elif isinstance(event, Rset) and ok and self.state in _IN_TRANSACTION:
            self.state = State.READY
            self._chunks = None
        elif isinstance(event, BdatChunk) and not ok:
            # the transaction failed; later chunks get 503 and are skipped
            self.state = State.READY
            self._chunks = None
        elif isinstance(event, Quit):
            self.state = State.CLOSED
        elif isinstance(event, StartTls) and reply.code == 220:
            self.discarded_after_starttls = len(self._buf)
            self._buf.clear()
            self.state = State.TLS
        elif isinstance(event, Auth | AuthResponse):
            self._apply_auth(reply)
        elif isinstance(event, Refused) and _is_fatal(event.reply):
            self.state = State.CLOSED

    def _apply_auth(self, reply: Reply) -> None:
        if reply.code == 334:
            self.state = State.AUTH
            return
        self.state = State.READY
        if reply.code == 235:
            self.is_authenticated = True

    # the DATA phase ----------------------------------------------------

    def _next_data_event(self) -> Event | NeedData:
        reader = self._reader
        assert reader is not None
        if not reader.feed(self._buf):
            return NEED_DATA
        self._reader = None
        self.state = State.READY
        self.is_smtputf8 = False
        if reader.is_too_big:
            reason = f"message size {reader.size} exceeds limit"
            return Refused(MESSAGE_TOO_BIG, reason, "DATA", in_data=True)
        if reader.has_nul:
            reason = "NUL character in message"
            return Refused(NUL_IN_DATA, reason, "DATA", in_data=True)
        return DataReceived(reader.message, reader.size, reader.has_bare_lf)

    # BDAT chunks (RFC 3030) -------------------------------------------

    def _next_chunk_event(self) -> Event | NeedData:
        chunks = self._chunks
        assert chunks is not None
        take = min(self._chunk_left, len(self._buf))
        if take:
            chunks.feed(bytes(self._buf[:take]))
            del self._buf[:take]
            self._chunk_left -= take
        if self._chunk_left:
            return NEED_DATA
        if not self._chunk_last:
            self.state = State.BDAT
            return BdatChunk(self._chunk_size)

        chunks.finish()
        self._chunks = None
        self.state = State.READY
        self.is_smtputf8 = False
        if chunks.is_too_big:
            reason = f"message size {chunks.size} exceeds limit"
            return Refused(MESSAGE_TOO_BIG, reason, "BDAT", in_data=True)
        if chunks.has_nul:
            reason = "NUL character in message"
            return Refused(NUL_IN_DATA, reason, "BDAT", in_data=True)
        message = chunks.message
        return DataReceived(message, len(message), chunks.has_bare_lf, chunked=True)

    def _on_bdat(self, arg: bytes) -> Event | NeedData:
        words = arg.split()
        count = words[0] if words else b""
        is_last = len(words) == 2 and words[1].upper() == b"LAST"
        if len(words) != (2 if is_last else 1) or not _is_chunk_size(count):
            return Refused(SYNTAX_BDAT, "malformed BDAT command", "BDAT")

        size = int(count)
        if self.state not in _LEGAL["BDAT"] or not self.may_pipeline:
            # RFC 3030 2: CHUNKING is an EHLO extension; the octets that
            # follow are skipped, never read as commands
            self._skip = size
            if not self.may_pipeline:
                return self._refuse(NOT_IMPLEMENTED, "BDAT after HELO", "BDAT")
            refusal = _OUT_OF_ORDER["BDAT"].get(self.state, NEED_RCPT)
            return self._refuse(refusal, "command out of order", "BDAT")

        if self._chunks is None:
            self._chunks = ChunkCollector(self.max_message_bytes)
        self._chunk_left = self._chunk_size = size
        self._chunk_last = is_last
        self.state = State.CHUNK
        return self._next_chunk_event()

    def _skip_refused_chunk(self) -> bool:
        """Throw away what is left of a refused chunk; False while more
        of it is still to come."""
        take = min(self._skip, len(self._buf))
        del self._buf[:take]
        self._skip -= take
        return not self._skip

    # command lines -----------------------------------------------------

    def _next_line_event(self) -> Event | NeedData:
        if self._skip and not self._skip_refused_chunk():
            return NEED_DATA
        line = self._take_line()
        if isinstance(line, NeedData | Refused):
            return line
        if any(b < 32 or b == 127 for b in line):
            return self._refuse(BAD_CHARACTER, "control character in command")
        if self.state is State.AUTH:
            return AuthResponse(line)
        return self._command(line)

    def _take_line(self) -> bytes | NeedData | Refused:
        """One line without its line end, or NEED_DATA, or the refusal
        of an overlong line (whose rest is then discarded)."""
        buf = self._buf
        if self._discarding:
            nl = buf.find(b"\n")
            if nl < 0:
                buf.clear()
                return NEED_DATA
            del buf[: nl + 1]
            self._discarding = False

        limit = self._line_limit()
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) < limit:
                return NEED_DATA
            buf.clear()
            self._discarding = True
            return self._refuse(LINE_TOO_LONG, "command line too long")
        if nl + 1 > limit:
            del buf[: nl + 1]
            return self._refuse(LINE_TOO_LONG, "command line too long")

        # a bare LF ends a command line too (postfix "normalize")
        end = nl - 1 if nl > 0 and buf[nl - 1] == 0x0D else nl
        line = bytes(buf[:end])
        del buf[: nl + 1]
        return line

    def _line_limit(self) -> int:
        if self.state is State.AUTH or self._buf[:5].upper() == b"AUTH ":
            return MAX_AUTH_LINE_BYTES
        return MAX_COMMAND_LINE_BYTES

    def _command(self, line: bytes) -> Event | NeedData:
        raw_verb, _, raw_arg = line.partition(b" ")
        verb = raw_verb.decode("ascii", "replace").upper()
        if not line:
            return self._refuse(EMPTY_COMMAND, "empty command line")
        if verb not in _LEGAL:
            return self._refuse(UNKNOWN_COMMAND, "unknown command", verb[:16])
        if self._is_unauth_pipelining(verb):
            reason = f"improper command pipelining after {verb}"
            return Refused(SYNCHRONIZATION, reason, verb)
        if verb == "BDAT":
            # its octets follow whatever the answer is
            return self._on_bdat(raw_arg.strip(b" "))
        if self.state not in _LEGAL[verb]:
            default = IN_BDAT if self.state is State.BDAT else NEED_HELO
            refusal = _OUT_OF_ORDER.get(verb, {}).get(self.state, default)
            return self._refuse(refusal, "command out of order", verb)
        try:
            return self._HANDLERS[verb](self, raw_arg.strip(b" "))
        except SmtpError as exc:
            return Refused(exc.reply, "syntax error", verb)

    def _is_unauth_pipelining(self, verb: str) -> bool:
        if not self.forbid_unauth_pipelining:
            return False
        if self._pregreet:
            return True
        if not self._buf or verb == "STARTTLS":
            return False
        return not self.may_pipeline or verb in _LAST_IN_GROUP

    def _refuse(self, reply: Reply, reason: str, verb: str = "") -> Refused:
        return Refused(reply, reason, verb)

    # one handler per verb ----------------------------------------------

    def _on_helo(self, arg: bytes) -> Event:
        return Helo(_helo_domain(arg, SYNTAX_HELO))

    def _on_ehlo(self, arg: bytes) -> Event:
        return Ehlo(_helo_domain(arg, SYNTAX_EHLO))

    def _on_mail(self, arg: bytes) -> Event:
        if arg[:5].upper() != b"FROM:":
            raise SmtpError(SYNTAX_MAIL)
        strict = self.strict_rfc821_envelopes
        raw_path, words = _split_argument(arg[5:], SYNTAX_MAIL, strict=strict)
        # SMTPUTF8 comes after the path, so look at it before decoding
        smtputf8 = any(w.upper() == "SMTPUTF8" for w in words)
        text = grammar.decode_address_bytes(raw_path, smtputf8=smtputf8)
        path = grammar.parse_path(text, allow_null=True, error=BAD_SENDER_SYNTAX)
        found = params.parse_mail_params(words, size_limit=self.max_message_bytes)
        return MailFrom(path, found)

    def _on_rcpt(self, arg: bytes) -> Event:
        if arg[:3].upper() != b"TO:":
            raise SmtpError(SYNTAX_RCPT)
        strict = self.strict_rfc821_envelopes
        raw_path, words = _split_argument(arg[3:], SYNTAX_RCPT, strict=strict)
        text = grammar.decode_address_bytes(raw_path, smtputf8=self.is_smtputf8)
        if text.lower() == "<postmaster>":
            # RFC 5321 4.5.1: <Postmaster> without a domain must work
            return RcptTo(grammar.Path(grammar.Mailbox("postmaster", "")), _rcpt(words))
        path = grammar.parse_path(text, allow_null=False, error=BAD_RECIPIENT_SYNTAX)
        return RcptTo(path, _rcpt(words))

    def _on_data(self, arg: bytes) -> Event:
        _no_arguments(arg)
        return Data()

    def _on_rset(self, arg: bytes) -> Event:
        _no_arguments(arg)
        return Rset()

    def _on_noop(self, arg: bytes) -> Event:
        return Noop()

    def _on_quit(self, arg: bytes) -> Event:
        _no_arguments(arg)
        return Quit()

    def _on_vrfy(self, arg: bytes) -> Event:
        if not arg:
            raise SmtpError(SYNTAX_VRFY)
        return Vrfy(arg.decode("utf-8", "replace"))

    def _on_help(self, arg: bytes) -> Event:
        return HelpEvent(arg.decode("ascii", "replace"))

    def _on_expn(self, arg: bytes) -> Event:
        return Refused(NOT_IMPLEMENTED, "EXPN is not implemented", "EXPN")

    def _on_starttls(self, arg: bytes) -> Event:
        _no_arguments(arg)
        if self.is_tls:
            raise SmtpError(TLS_ACTIVE)
        return StartTls()

    def _on_auth(self, arg: bytes) -> Event:
        if self.is_authenticated:
            raise SmtpError(ALREADY_AUTHENTICATED)
        words = arg.split()
        if not words or len(words) > 2:
            raise SmtpError(SYNTAX_AUTH)
        mechanism = words[0].decode("ascii", "replace").upper()
        return Auth(mechanism, words[1] if len(words) == 2 else None)

    _HANDLERS: dict[str, Callable[[ServerConnection, bytes], Event]] = {
        "HELO": _on_helo,
        "EHLO": _on_ehlo,
        "MAIL": _on_mail,
        "RCPT": _on_rcpt,
        "DATA": _on_data,
        "RSET": _on_rset,
        "NOOP": _on_noop,
        "QUIT": _on_quit,
        "VRFY": _on_vrfy,
        "HELP": _on_help,
        "EXPN": _on_expn,
        "STARTTLS": _on_starttls,
        "AUTH": _on_auth,
    }


_IN_TRANSACTION = frozenset({State.MAIL, State.RCPT, State.BDAT})
# RFC 3030 2: chunk-size = 1*DIGIT; 20 digits is far past any limit
_MAX_CHUNK_DIGITS = 20


def _is_fatal(reply: Reply) -> bool:
    return reply.code == 421 or reply is SYNCHRONIZATION or reply is SYNTAX_BDAT


def _is_chunk_size(word: bytes) -> bool:
    return 0 < len(word) <= _MAX_CHUNK_DIGITS and word.isdigit() and word.isascii()


def _helo_domain(arg: bytes, error: Reply) -> str:
    # postfix accepts any HELO text by default; we want one printable
    # US-ASCII word, since it goes into our Received header
    if not arg or not arg.isascii() or b" " in arg:
        raise SmtpError(error)
    return arg.decode("ascii")


def _split_argument(
    arg: bytes, error: Reply, *, strict: bool
) -> tuple[bytes, list[str]]:
    """`<path> params` -> raw path bytes and the parameter words; when
    not strict, `address params` too (see the module note)."""
    # postfix accepts "MAIL FROM: <a>" (a space after the colon)
    arg = arg.lstrip(b" ")
    if not arg.startswith(b"<"):
        if strict or not arg:
            raise SmtpError(error)
        bare, space, rest = arg.partition(b" ")
        arg = b"<" + bare + b">" + space + rest
    text = arg.decode("utf-8", "surrogateescape")
    path, words = grammar.split_path_and_params(text, error=error)
    raw_path = path.encode("utf-8", "surrogateescape")
    for word in words:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            raise SmtpError(BAD_CHARACTER) from None
    return raw_path, words


def _rcpt(words: list[str]) -> params.RcptParams:
    return params.parse_rcpt_params(words)


def _no_arguments(arg: bytes) -> None:
    if arg:
        raise SmtpError(NO_ARGUMENTS)
