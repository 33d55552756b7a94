"""Events the POP3 core hands to the service: one per accepted command.

Each event carries the verb as sent on the wire (upper-cased), so the
service can keep one handler per verb in a table keyed by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class User:
    verb: ClassVar[str] = "USER"
    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    """PASS, paired with the name from the USER before it."""

    verb: ClassVar[str] = "PASS"
    name: str
    password: str


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH with a mechanism (upper-cased) or, without one, a list request.

    `initial_response` is the base64 text of the RFC 5034 §4 initial
    response (b"" for "="), or None when the client sent none and the
    service must send an empty challenge first.
    """

    verb: ClassVar[str] = "AUTH"
    mechanism: str | None
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """One client line of a SASL exchange: base64 text as sent."""

    verb: ClassVar[str] = "SASL-RESPONSE"
    mechanism: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Stat:
    verb: ClassVar[str] = "STAT"


@dataclass(frozen=True, slots=True)
class List:
    verb: ClassVar[str] = "LIST"
    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    verb: ClassVar[str] = "RETR"
    msg: int


@dataclass(frozen=True, slots=True)
class Dele:
    verb: ClassVar[str] = "DELE"
    msg: int


@dataclass(frozen=True, slots=True)
class Noop:
    verb: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Rset:
    verb: ClassVar[str] = "RSET"


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT. In the TRANSACTION state the core has entered UPDATE."""

    verb: ClassVar[str] = "QUIT"


@dataclass(frozen=True, slots=True)
class Top:
    verb: ClassVar[str] = "TOP"
    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl:
    verb: ClassVar[str] = "UIDL"
    msg: int | None


@dataclass(frozen=True, slots=True)
class Capa:
    verb: ClassVar[str] = "CAPA"


@dataclass(frozen=True, slots=True)
class Stls:
    """STLS accepted: send `Pop3Server.stls_ok()`, then start TLS."""

    verb: ClassVar[str] = "STLS"


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side; nothing more will arrive."""

    verb: ClassVar[str] = "EOF"


Event = (
    User
    | Pass
    | Auth
    | SaslResponse
    | Stat
    | List
    | Retr
    | Dele
    | Noop
    | Rset
    | Quit
    | Top
    | Uidl
    | Capa
    | Stls
    | ConnectionClosed
)
