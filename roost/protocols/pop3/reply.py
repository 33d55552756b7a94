"""POP3 replies: the one error type, response codes and reply framing.

Every POP3 reply is one status line, `+OK text` or `-ERR [CODE] text`
(RFC 1939 §3, response codes from RFC 2449 §8 and RFC 3206), optionally
followed by a multi-line body ending in `CRLF.CRLF`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class RespCode(StrEnum):
    """Extended response codes sent in brackets after -ERR."""

    # RFC 2449 §8.1.1: the user may not log in this often.
    LOGIN_DELAY = "LOGIN-DELAY"
    # RFC 2449 §8.1.2: the maildrop is locked by another session.
    IN_USE = "IN-USE"
    # RFC 3206 §4: temporary / permanent system problem.
    SYS_TEMP = "SYS/TEMP"
    SYS_PERM = "SYS/PERM"
    # RFC 3206 §5: the credentials (or their transport) are the problem.
    AUTH = "AUTH"


class Pop3Error(Exception):
    """A `-ERR` reply: raise it anywhere, the command loop sends it.

    `code` is the optional RFC 2449 response code. `is_fatal` tells the
    command loop to close the connection after sending the reply.
    """

    def __init__(
        self,
        text: str,
        code: RespCode | None = None,
        *,
        is_fatal: bool = False,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.is_fatal = is_fatal

    def to_bytes(self) -> bytes:
        """The wire form of this error reply."""
        return error_line(self.text, self.code)


def ok_line(text: str = "") -> bytes:
    """`+OK text CRLF` (the text is optional, RFC 1939 §3)."""
    if not text:
        return b"+OK\r\n"
    return b"+OK " + _safe_text(text) + b"\r\n"


def error_line(text: str, code: RespCode | None = None) -> bytes:
    """`-ERR [CODE] text CRLF`."""
    prefix = f"[{code.value}] " if code is not None else ""
    return b"-ERR " + _safe_text(prefix + text) + b"\r\n"


def continuation_line(challenge_b64: bytes = b"") -> bytes:
    """A SASL server challenge: `+ base64 CRLF` (RFC 5034 §4)."""
    return b"+ " + challenge_b64 + b"\r\n"


def multiline(first: bytes, lines: Iterable[bytes]) -> bytes:
    """A status line followed by byte-stuffed lines and the terminator.

    `first` is a whole status line (from `ok_line`). Each element of
    `lines` is one line without its CRLF. RFC 1939 §3: a line starting
    with "." gets another "." prepended; the body ends with ".CRLF".
    """
    parts = [first]
    for line in lines:
        if line.startswith(b"."):
            parts.append(b".")
        parts.append(line)
        parts.append(b"\r\n")
    parts.append(b".\r\n")
    return b"".join(parts)


def _safe_text(text: str) -> bytes:
    # Reply text is ASCII on one line; never let a CR or LF from
    # anywhere (a user name, say) split a reply into two.
    data = text.encode("ascii", "replace")
    return data.replace(b"\r", b" ").replace(b"\n", b" ")
