"""Sans-IO SMTP and LMTP client core.

How it works: the caller owns the socket. It hands every byte that
arrived to `receive_data` (b"" when the peer closed), writes whatever
`data_to_send` returns, and asks `next_event` what happened. The core
never blocks, sleeps, resolves or touches a file.

Every command the core writes is queued together with the handler
that will judge its reply, so replies are matched to commands by
order alone; that is what lets several commands travel in one write
when the peer offers PIPELINING (RFC 2920 3.1).

Phases and what moves between them:

    GREETING --220--> HELLO --250 to EHLO/HELO/LHLO--> READY
    READY --start_tls()--> STARTTLS --220--> TLS_WAIT
    TLS_WAIT --tls_started()--> HELLO (EHLO again, RFC 3207 4.2)
    READY --send_message()--> TRANSACTION --results--> READY
    READY --quit()--> QUIT --221 or EOF--> CLOSED

A reply that does not parse, bytes left over after the 220 to
STARTTLS, or a reply nobody asked for makes the connection FAILED; so
does the peer closing it early. After that the core refuses input and
every open recipient is given a temporary outcome (4.4.2).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# RFC 5321 4.5.3.1.5 gives 512 octets per reply line; real servers
# overshoot it, so we allow what postfix's line_length_limit allows.
MAX_REPLY_LINE_BYTES = 2048
# A reply longer than this many lines is a hostile peer, not a server.
MAX_REPLY_LINES = 100

# Enhanced status codes this core decides itself (RFC 3463).
DSN_LOST_CONNECTION = "4.4.2"
DSN_PROTOCOL_ERROR = "4.5.0"

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


class ClientError(Exception):
    """The caller used the core out of order (a bug on our side)."""


class PeerProtocolError(Exception):
    """The peer broke the protocol; the connection cannot continue."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply: the code and the text of each line."""

    code: int
    lines: tuple[str, ...]

    @property
    def enhanced(self) -> str | None:
        """The RFC 2034 enhanced status code, when the peer sent one
        whose class matches the reply code."""
        if not self.lines:
            return None
        found = _ENHANCED.match(self.lines[0])
        if found is None or int(found.group(1)) != self.code // 100:
            return None
        return ".".join(found.groups())

    @property
    def dsn(self) -> str:
        """The enhanced status code, or one derived from the class."""
        return self.enhanced or f"{self.code // 100}.0.0"

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    def text(self) -> str:
        """The reply as postfix logs it: code, then the lines joined."""
        body = " ".join(line for line in self.lines if line)
        return f"{self.code} {body}" if body else str(self.code)


class ReplyParser:
    """Splits a byte stream into `Reply` values (RFC 5321 4.2.1)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._code: int | None = None
        self._lines: list[str] = []

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            raw = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            reply = self._take_line(raw.rstrip(b"\r\n"))
            if reply is not None:
                replies.append(reply)
        if len(self._buffer) > MAX_REPLY_LINE_BYTES:
            raise PeerProtocolError("reply line too long")
        return replies

    def _take_line(self, line: bytes) -> Reply | None:
        if len(line) > MAX_REPLY_LINE_BYTES:
            raise PeerProtocolError("reply line too long")
        if len(line) < 3 or not line[:3].isdigit() or line[:1] not in b"2345":
            raise PeerProtocolError("malformed reply line")
        separator = line[3:4]
        if separator not in (b"", b" ", b"-"):
            raise PeerProtocolError("malformed reply line")

        code = int(line[:3])
        if self._code is not None and code != self._code:
            raise PeerProtocolError("reply code changed inside a reply")
        self._code = code
        # Reply text is ASCII by RFC 5321; an SMTPUTF8 server may send
        # UTF-8 (RFC 6531 3.7.4), anything else is kept, not trusted.
        self._lines.append(line[4:].decode("utf-8", "replace"))
        if len(self._lines) > MAX_REPLY_LINES:
            raise PeerProtocolError("reply has too many lines")
        if separator == b"-":
            return None

        reply = Reply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the peer offered in its EHLO/LHLO reply (or nothing: HELO)."""

    esmtp: bool = False
    pipelining: bool = False
    starttls: bool = False
    eightbitmime: bool = False
    smtputf8: bool = False
    dsn: bool = False
    enhanced_status_codes: bool = False
    # RFC 1870 6: SIZE with no number, or 0, means no fixed limit.
    size_limit: int | None = None
    keywords: frozenset[str] = frozenset()

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        """Reads the keywords of an EHLO reply (RFC 5321 4.1.1.1).
        Keywords are case-insensitive (RFC 5321 2.4)."""
        words: dict[str, list[str]] = {}
        for line in reply.lines[1:]:
            parts = line.split()
            if parts:
                words[parts[0].upper()] = parts[1:]
        size_limit = None
        size_args = words.get("SIZE")
        if size_args and size_args[0].isdigit() and int(size_args[0]) > 0:
            size_limit = int(size_args[0])
        return cls(
            esmtp=True,
            pipelining="PIPELINING" in words,
            starttls="STARTTLS" in words,
            eightbitmime="8BITMIME" in words,
            smtputf8="SMTPUTF8" in words,
            dsn="DSN" in words,
            enhanced_status_codes="ENHANCEDSTATUSCODES" in words,
            size_limit=size_limit,
            keywords=frozenset(words),
        )


@dataclass(frozen=True, slots=True)
class RecipientCommand:
    """One RCPT TO: the address as sent and its ESMTP parameters."""

    address: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageCommand:
    """Everything one mail transaction sends.

    `data` is the message with CRLF line ends, not yet dot-stuffed.
    """

    mail_from: str
    recipients: tuple[RecipientCommand, ...]
    data: bytes
    mail_params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """The fate of one recipient in one transaction.

    `reply` is the peer's reply that decided it, or None when the
    connection broke first; `text` is what the log and the DSN quote.
    """

    address: str
    dsn: str
    text: str
    reply: Reply | None = None
    # the command whose reply decided it, in postfix's words for logs
    command: str = ""

    @property
    def status_class(self) -> int:
        return int(self.dsn[0])


class Phase(enum.Enum):
    GREETING = "greeting"
    HELLO = "hello"
    READY = "ready"
    STARTTLS = "starttls"
    TLS_WAIT = "tls_wait"
    TRANSACTION = "transaction"
    QUIT = "quit"
    CLOSED = "closed"
    FAILED = "failed"


# Events handed to the caller by next_event().


@dataclass(frozen=True, slots=True)
class Greeted:
    """Greeting and EHLO/HELO/LHLO are done; the session is READY."""

    capabilities: Capabilities
    reply: Reply


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer refused the session (greeting, HELO or STARTTLS).

    The caller should try the next host and then close."""

    stage: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class TlsReady:
    """220 to STARTTLS: wrap the socket, then call `tls_started()`."""


@dataclass(frozen=True, slots=True)
class TransactionDone:
    """One outcome per recipient, in the order they were given."""

    outcomes: tuple[Outcome, ...]
    # True when the server took the message for at least one recipient.
    delivered: bool
    # True once the message body was written: trying another host for
    # an undecided recipient could then deliver the message twice.
    data_sent: bool = False


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over; `error` says why when it was not a QUIT."""

    error: str | None = None
    stage: str = ""


Event = Greeted | Refused | TlsReady | TransactionDone | Closed
_Handler = Callable[[Reply], None]

# Which caller moves each phase allows (STYLE: legal moves are a table).
_ALLOWED: dict[str, frozenset[Phase]] = {
    "start_tls": frozenset({Phase.READY}),
    "tls_started": frozenset({Phase.TLS_WAIT}),
    "send_message": frozenset({Phase.READY}),
    "quit": frozenset({Phase.READY, Phase.GREETING, Phase.HELLO}),
}


def dot_stuff(data: bytes) -> bytes:
    """Returns the DATA payload for `data` (CRLF lines): dots doubled
    at line starts, a missing final CRLF added, and the ".\\r\\n"
    terminator appended (RFC 5321 4.5.2)."""
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class SmtpClient:
    """One client session, SMTP or LMTP (RFC 2033).

    `helo_name` is sent in EHLO/HELO/LHLO. With `lmtp=True` the
    session greets with LHLO and expects one reply per accepted
    recipient after the end of data (RFC 2033 4.2)."""

    def __init__(self, helo_name: str, *, lmtp: bool = False) -> None:
        self.helo_name = helo_name
        self.is_lmtp = lmtp
        self.phase = Phase.GREETING
        self.capabilities = Capabilities()
        self.last_reply: Reply | None = None
        self._parser = ReplyParser()
        self._outgoing = bytearray()
        self._pending: deque[tuple[str, _Handler]] = deque()
        self._pending.append(("GREETING", self._on_greeting))
        self._events: deque[Event] = deque()
        self._transaction: _Transaction | None = None

    # The three doors.

    def receive_data(self, data: bytes) -> None:
        """Feeds bytes from the peer; b"" means the peer closed."""
        if self.phase in (Phase.CLOSED, Phase.FAILED):
            return
        if not data:
            self._on_eof()
            return
        try:
            replies = self._parser.feed(data)
            for reply in replies:
                if self.phase is Phase.TLS_WAIT:
                    raise PeerProtocolError("data after STARTTLS reply")
                self._dispatch(reply)
            self._check_starttls_leftover()
        except PeerProtocolError as error:
            self._fail(f"protocol error: {error}")

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def next_event(self) -> Event | None:
        """The next event, or None when the core needs more data."""
        return self._events.popleft() if self._events else None

    @property
    def is_reusable(self) -> bool:
        """True when another transaction may run on this session."""
        return self.phase is Phase.READY and not self._pending

    @property
    def stage(self) -> str:
        """What the session was doing, in postfix's words for logs."""
        if not self._pending:
            return ""
        verb = self._pending[0][0]
        if verb == "GREETING":
            return "receiving the initial server greeting"
        if verb == "DOT":
            return "sending end of data -- message may be sent more than once"
        return f"sending {verb}"

    # Caller moves.

    def start_tls(self) -> None:
        self._require("start_tls")
        self.phase = Phase.STARTTLS
        self._send("STARTTLS", b"STARTTLS", self._on_starttls)

    def tls_started(self) -> None:
        """The socket is now TLS: forget what we knew and greet again.

        The caller must first make sure no plaintext byte that arrived
        after the 220 is left in its own buffers (RFC 3207 4.2)."""
        self._require("tls_started")
        self.capabilities = Capabilities()
        self.phase = Phase.HELLO
        self._send_hello("LHLO" if self.is_lmtp else "EHLO")

    def send_message(self, message: MessageCommand) -> None:
        """Starts a mail transaction; ends with a TransactionDone."""
        self._require("send_message")
        if not message.recipients:
            raise ClientError("a transaction needs at least one recipient")
        self.phase = Phase.TRANSACTION
        self._transaction = _Transaction(self, message)
        self._transaction.start()

    def quit(self) -> None:
        self._require("quit")
        self.phase = Phase.QUIT
        self._send("QUIT", b"QUIT", self._on_quit)

    def abort(self, error: str) -> None:
        """The caller gave up on the peer (timeout, TLS failure): the
        session is FAILED and open recipients are deferred."""
        if self.phase not in (Phase.CLOSED, Phase.FAILED):
            self._fail(error)

    # Internals used by _Transaction.

    def _send(self, verb: str, line: bytes, handler: _Handler) -> None:
        self._outgoing += line + b"\r\n"
        self._pending.append((verb, handler))

    def _send_raw(self, data: bytes, verb: str, handler: _Handler) -> None:
        self._outgoing += data
        self._pending.append((verb, handler))

    def _expect(self, verb: str, handler: _Handler) -> None:
        self._pending.append((verb, handler))

    def _transaction_done(self, done: TransactionDone) -> None:
        self._transaction = None
        if self.phase is Phase.TRANSACTION:
            self.phase = Phase.READY
        self._events.append(done)

    # Reply handlers, one per phase of the session.

    def _require(self, move: str) -> None:
        if self.phase not in _ALLOWED[move]:
            raise ClientError(f"{move} not allowed in phase {self.phase.value}")

    def _dispatch(self, reply: Reply) -> None:
        self.last_reply = reply
        if not self._pending:
            raise PeerProtocolError("unexpected reply")
        _verb, handler = self._pending.popleft()
        handler(reply)

    def _on_greeting(self, reply: Reply) -> None:
        if reply.code != 220:
            self._refuse("greeting", reply)
            return
        self.phase = Phase.HELLO
        self._send_hello("LHLO" if self.is_lmtp else "EHLO")

    def _send_hello(self, verb: str) -> None:
        line = f"{verb} {self.helo_name}".encode("ascii")
        self._send(verb, line, lambda reply: self._on_hello(verb, reply))

    def _on_hello(self, verb: str, reply: Reply) -> None:
        if reply.code == 250:
            if verb != "HELO":
                self.capabilities = Capabilities.from_ehlo(reply)
            self.phase = Phase.READY
            self._events.append(Greeted(self.capabilities, reply))
            return
        # RFC 5321 3.2: a server that does not know EHLO says 500/502;
        # fall back to HELO. LMTP has no fallback (RFC 2033 4.1).
        if verb == "EHLO" and 500 <= reply.code <= 504:
            self._send_hello("HELO")
            return
        self._refuse(verb, reply)

    def _on_starttls(self, reply: Reply) -> None:
        if reply.code != 220:
            self._refuse("STARTTLS", reply)
            return
        self.phase = Phase.TLS_WAIT
        self._events.append(TlsReady())

    def _check_starttls_leftover(self) -> None:
        # Bytes that came with the 220 were sent before TLS began and
        # would be read as if they came over TLS: the reply injection
        # of CVE-2011-0411, seen from the client side (RFC 3207 4.2).
        if self.phase is Phase.TLS_WAIT and self._parser.pending_bytes:
            raise PeerProtocolError("data after STARTTLS reply")

    def _on_quit(self, reply: Reply) -> None:
        self.phase = Phase.CLOSED
        self._events.append(Closed())

    def _refuse(self, stage: str, reply: Reply) -> None:
        self.phase = Phase.FAILED
        self._pending.clear()
        self._events.append(Refused(stage, reply))

    def _on_eof(self) -> None:
        if self.phase is Phase.QUIT:
            self.phase = Phase.CLOSED
            self._pending.clear()
            self._events.append(Closed())
            return
        self._fail("lost connection")

    def _fail(self, error: str) -> None:
        stage = self.stage
        self.phase = Phase.FAILED
        self._pending.clear()
        # a TlsReady not yet taken must not lead to a handshake
        kept = [e for e in self._events if not isinstance(e, TlsReady)]
        self._events = deque(kept)
        if self._transaction is not None:
            text = f"{error} while {stage}" if stage else error
            self._transaction.abort(text)
        self._events.append(Closed(error, stage))


@dataclass
class _Transaction:
    """MAIL, RCPT..., DATA and the end of data for one message."""

    client: SmtpClient
    message: MessageCommand
    mail_reply: Reply | None = None
    rcpt_replies: list[Reply | None] = field(default_factory=list)
    final: dict[int, Outcome] = field(default_factory=dict)
    next_rcpt: int = 0
    awaiting_dot: list[int] = field(default_factory=list)
    data_sent: bool = False

    @property
    def pipelined(self) -> bool:
        return self.client.capabilities.pipelining

    def start(self) -> None:
        self.rcpt_replies = [None] * len(self.message.recipients)
        self._send_mail()
        if not self.pipelined:
            return
        # RFC 2920 3.1: MAIL, every RCPT and DATA may go in one
        # write; DATA ends the group because its reply must be seen
        # before the message itself is sent.
        for _ in self.message.recipients:
            self._send_next_rcpt()
        self._send_data()

    def _send_mail(self) -> None:
        line = _command("MAIL FROM:", self.message.mail_from, self.message.mail_params)
        self.client._send("MAIL", line, self._on_mail)

    def _send_next_rcpt(self) -> None:
        index = self.next_rcpt
        self.next_rcpt += 1
        rcpt = self.message.recipients[index]
        line = _command("RCPT TO:", rcpt.address, rcpt.params)
        self.client._send("RCPT", line, lambda reply: self._on_rcpt(index, reply))

    def _send_data(self) -> None:
        self.client._send("DATA", b"DATA", self._on_data)

    def _on_mail(self, reply: Reply) -> None:
        self.mail_reply = reply
        if self.pipelined:
            return
        if reply.is_positive:
            self._send_next_rcpt()
        else:
            self._finish_failed()

    def _on_rcpt(self, index: int, reply: Reply) -> None:
        self.rcpt_replies[index] = reply
        if self.pipelined:
            return
        if self.next_rcpt < len(self.message.recipients):
            self._send_next_rcpt()
        elif self._accepted():
            self._send_data()
        else:
            self._finish_failed()

    def _accepted(self) -> list[int]:
        if self.mail_reply is None or not self.mail_reply.is_positive:
            return []
        replies = self.rcpt_replies
        return [i for i, r in enumerate(replies) if r is not None and r.is_positive]

    def _on_data(self, reply: Reply) -> None:
        accepted = self._accepted()
        if reply.code != 354:
            self._give(accepted, reply, "DATA")
            self._finish_failed()
            return
        if not accepted:
            # RFC 2920 3.1: 354 with no valid recipient; end the empty
            # message with a lone dot and ignore what the server says.
            self.client._send_raw(b".\r\n", "DOT", lambda _reply: None)
            self._finish_failed()
            return

        payload = dot_stuff(self.message.data)
        self.data_sent = True
        if self.client.is_lmtp:
            # RFC 2033 4.2: one reply per accepted RCPT, in RCPT order.
            self.awaiting_dot = list(accepted)
            self.client._send_raw(payload, "DOT", self._on_lmtp_dot)
            for _ in accepted[1:]:
                self.client._expect("DOT", self._on_lmtp_dot)
        else:
            self.client._send_raw(payload, "DOT", self._on_dot)

    def _on_dot(self, reply: Reply) -> None:
        self._give(self._accepted(), reply, "end of DATA")
        self._finish(delivered=reply.is_positive)

    def _on_lmtp_dot(self, reply: Reply) -> None:
        index = self.awaiting_dot.pop(0)
        self._give([index], reply, "end of DATA")
        if not self.awaiting_dot:
            delivered = any(o.status_class == 2 for o in self.final.values())
            self._finish(delivered)

    def _give(self, indexes: list[int], reply: Reply, command: str) -> None:
        for index in indexes:
            address = self.message.recipients[index].address
            outcome = Outcome(address, reply.dsn, reply.text(), reply, command)
            self.final[index] = outcome

    def _finish_failed(self) -> None:
        # RFC 5321 4.1.1.5: RSET so the session is clean for reuse.
        self.client._send("RSET", b"RSET", self._on_rset)

    def _on_rset(self, reply: Reply) -> None:
        if not reply.is_positive:
            self.client.phase = Phase.FAILED
        self._finish(delivered=False)

    def _finish(self, delivered: bool) -> None:
        outcomes = self._outcomes(DSN_PROTOCOL_ERROR, "no reply for recipient")
        done = TransactionDone(outcomes, delivered, self.data_sent)
        self.client._transaction_done(done)

    def abort(self, text: str) -> None:
        """The connection broke: recipients without a final reply are
        deferred; the message may already be sent for those whose end
        of data was in flight (hence postfix's warning in the text)."""
        outcomes = self._outcomes(DSN_LOST_CONNECTION, text)
        delivered = any(o.status_class == 2 for o in outcomes)
        self.client._transaction = None
        done = TransactionDone(outcomes, delivered, self.data_sent)
        self.client._events.append(done)

    def _outcomes(self, dsn: str, text: str) -> tuple[Outcome, ...]:
        # A recipient is decided by its final reply, else by the first
        # reply that refused it (MAIL's, then its RCPT's).
        outcomes = []
        for index, rcpt in enumerate(self.message.recipients):
            outcome = self.final.get(index) or self._refusal(index)
            outcomes.append(outcome or Outcome(rcpt.address, dsn, text))
        return tuple(outcomes)

    def _refusal(self, index: int) -> Outcome | None:
        commands = ("MAIL FROM", "RCPT TO")
        replies = (self.mail_reply, self.rcpt_replies[index])
        for command, reply in zip(commands, replies, strict=True):
            if reply is not None and not reply.is_positive:
                address = self.message.recipients[index].address
                return Outcome(address, reply.dsn, reply.text(), reply, command)
        return None


def _command(verb: str, address: str, params: Sequence[str]) -> bytes:
    """`VERB:<address> PARAMS` as bytes. Addresses are UTF-8 only when
    the caller has chosen SMTPUTF8 (RFC 6531 3.3); otherwise they are
    ASCII already."""
    if "\r" in address or "\n" in address:
        raise ClientError("address contains a line break")
    for param in params:
        if not param or any(c in param for c in " \r\n"):
            raise ClientError("malformed ESMTP parameter")
    text = f"{verb}<{address}>"
    if params:
        text += " " + " ".join(params)
    return text.encode("utf-8")
