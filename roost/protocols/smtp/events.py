"""Events the SMTP server core hands to its service.

Every event but `ConnectionClosed` wants exactly one Reply through
`ServerConnection.send`; the core moves state only when it sees that
reply, so the service decides and the core keeps the books.
"""

from __future__ import annotations

from dataclasses import dataclass

from roost.protocols.smtp.grammar import Path
from roost.protocols.smtp.params import MailParams, RcptParams
from roost.protocols.smtp.reply import Reply


@dataclass(frozen=True, slots=True)
class Helo:
    domain: str


@dataclass(frozen=True, slots=True)
class Ehlo:
    domain: str


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM; `path.text` is the reverse-path, "" for `<>`."""

    path: Path
    params: MailParams

    @property
    def address(self) -> str:
        return self.path.text


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO; `path.text` is the forward-path without source route."""

    path: Path
    params: RcptParams

    @property
    def address(self) -> str:
        return self.path.text


@dataclass(frozen=True, slots=True)
class Data:
    """The DATA command; answer 354 to receive the message."""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A whole message: dot-unstuffed, CRLF line ends, no final dot.

    `size` is its length in octets (RFC 1870 5); `has_bare_lf` says
    that some lines ended in a lone LF and were normalised to CRLF.
    """

    data: bytes
    size: int
    has_bare_lf: bool = False
    # it came in BDAT chunks (RFC 3030), the last one just now
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class BdatChunk:
    """A BDAT chunk that is not the LAST one was received whole (RFC
    3030 2); answer 250 to go on, anything else ends the transaction."""

    size: int


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS; after a 220 reply the service runs the handshake and
    then calls `tls_established()`."""


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH; `initial_response` is the base64 text as sent, b"=" for an
    empty one, None when absent (RFC 4954 4)."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line in a SASL exchange (after a 334 reply)."""

    data: bytes

    @property
    def is_cancelled(self) -> bool:
        # RFC 4954 4: a lone "*" cancels the exchange
        return self.data == b"*"


@dataclass(frozen=True, slots=True)
class Refused:
    """Input the core itself refuses; send `reply` and log `reason`.

    After a fatal refusal (421 or 554 5.5.0) the core is closed.
    """

    reply: Reply
    reason: str
    verb: str = ""
    # refused at the end of data (size, NUL): the transaction is over
    in_data: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (or the core closed it)."""


class NeedData:
    """Sentinel type: feed more bytes with `receive_data`."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

Event = (
    Helo
    | Ehlo
    | MailFrom
    | RcptTo
    | Data
    | DataReceived
    | BdatChunk
    | Rset
    | Noop
    | Quit
    | Vrfy
    | Help
    | StartTls
    | Auth
    | AuthResponse
    | Refused
    | ConnectionClosed
)
