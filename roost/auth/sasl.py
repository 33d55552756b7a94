"""SASL PLAIN (RFC 4616) and LOGIN, sans-IO, shared by SMTP, IMAP, POP3.

An `Exchange` runs one authentication: the service hands it the
client's initial response (or None) and then each response line, and
gets back either a challenge to send (base64 text for a `334` / `+`
continuation) or the finished `Credentials`. It raises `SaslError`
whose `failure` says which reply the service owes:

- `Failure.BASE64`: the response is not base64 (RFC 4954 4: 501 5.5.2;
  IMAP BAD; POP3 -ERR);
- `Failure.ABORTED`: the client sent `*` (RFC 4954 4: 501 5.0.0;
  RFC 3501 6.2.2: BAD);
- `Failure.MALFORMED`: decoded, but not a PLAIN message (RFC 4616 2:
  exactly two NULs, non-empty authcid and password, UTF-8). Answer it
  like a failed login (535 5.7.8 / NO [AUTHENTICATIONFAILED] / -ERR
  [AUTH]) and log it as malformed;
- `Failure.MECHANISM`: not a mechanism we offer (504 5.5.4).

`authenticate` then checks the credentials against the users file and
applies RFC 4616's authorization rule: an authzid that is empty or
names the authenticated user is fine; any other is refused, since Roost
has no "may act as" relation (case 015: never log in as bob with
alice's password).
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Protocol

from roost.auth.userdb import InvalidUserName, normalize_name


class Failure(enum.Enum):
    BASE64 = "base64"
    ABORTED = "aborted"
    MALFORMED = "malformed"
    MECHANISM = "mechanism"


class SaslError(Exception):
    """The exchange failed; `failure` picks the reply (see module note)."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Credentials:
    authzid: str
    authcid: str
    password: str = ""

    def __repr__(self) -> str:
        # never print a password, even in a traceback or a debug log
        return f"Credentials(authzid={self.authzid!r}, authcid={self.authcid!r})"


MECHANISMS = ("PLAIN", "LOGIN")

# RFC 4616 2 asks servers to take fields of up to 255 octets; we take
# more (user names of 255 characters, passwords of 256, in UTF-8) and
# refuse longer input before any decoding work.
MAX_RESPONSE_BYTES = 4096

LOGIN_USERNAME_CHALLENGE = base64.b64encode(b"Username:")
LOGIN_PASSWORD_CHALLENGE = base64.b64encode(b"Password:")


def is_abort(line: bytes) -> bool:
    """True for the `*` line that cancels an exchange (RFC 4954 4)."""
    return line.strip() == b"*"


def decode_response(b64: bytes) -> bytes:
    """Strictly decode a client response; `=` is the empty response."""
    data = b64.strip()
    if len(data) > MAX_RESPONSE_BYTES:
        raise SaslError(Failure.MALFORMED, "response too long")
    if data == b"=":
        return b""
    if len(data) % 4:
        # b64decode lets some short or over-padded forms through
        raise SaslError(Failure.BASE64, "cannot decode response")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError(Failure.BASE64, "cannot decode response") from None


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(Failure.MALFORMED, f"{what} is not UTF-8") from None


def parse_plain(message: bytes) -> Credentials:
    """Split a decoded PLAIN message `[authzid] NUL authcid NUL passwd`."""
    parts = message.split(b"\0")
    if len(parts) != 3:
        raise SaslError(Failure.MALFORMED, f"{len(parts) - 1} NULs, need 2")
    authzid, authcid, password = parts
    if not authcid:
        raise SaslError(Failure.MALFORMED, "empty authcid")
    if not password:
        raise SaslError(Failure.MALFORMED, "empty password")
    return Credentials(
        _text(authzid, "authzid"),
        _text(authcid, "authcid"),
        _text(password, "password"),
    )


def decode_plain(b64: bytes) -> tuple[str, str, str]:
    """(authzid, authcid, password) of a base64 PLAIN response.

    authzid is "" when absent. Raises SaslError (see module note).
    """
    if is_abort(b64):
        raise SaslError(Failure.ABORTED, "aborted by client")
    creds = parse_plain(decode_response(b64))
    return creds.authzid, creds.authcid, creds.password


def decode_login_field(b64: bytes, what: str = "username") -> str:
    """One LOGIN response (user name or password) as text."""
    if is_abort(b64):
        raise SaslError(Failure.ABORTED, "aborted by client")
    value = _text(decode_response(b64), what)
    if not value or "\0" in value:
        raise SaslError(Failure.MALFORMED, f"empty or NUL in {what}")
    return value


class Exchange:
    """One PLAIN or LOGIN exchange; see the module note."""

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism.upper()
        if self.mechanism not in MECHANISMS:
            raise SaslError(Failure.MECHANISM, f"unknown mechanism {mechanism}")
        self._username: str | None = None
        self._started = False

    def step(self, response: bytes | None) -> bytes | Credentials:
        """Feed the next client response (None: no initial response).

        Returns the base64 challenge to send next (b"" means an empty
        continuation) or the Credentials when the exchange is done.
        """
        first = not self._started
        self._started = True
        if response is None:
            if not first:
                raise SaslError(Failure.MALFORMED, "missing response")
            return b"" if self.mechanism == "PLAIN" else LOGIN_USERNAME_CHALLENGE

        if self.mechanism == "PLAIN":
            authzid, authcid, password = decode_plain(response)
            return Credentials(authzid, authcid, password)
        if self._username is None:
            self._username = decode_login_field(response, "username")
            return LOGIN_PASSWORD_CHALLENGE
        password = decode_login_field(response, "password")
        return Credentials("", self._username, password)


class Verifier(Protocol):
    async def averify(self, name: str, password: str) -> str | None: ...


def authorized(authzid: str, user: str) -> bool:
    """RFC 4616 2: may the authenticated user act as authzid?

    Only as itself: an empty authzid, or one naming the same user.
    """
    if not authzid:
        return True
    try:
        return normalize_name(authzid) == user
    except InvalidUserName:
        return False


async def authenticate(userdb: Verifier, creds: Credentials) -> str | None:
    """The canonical user name, or None when login must fail (535).

    The password is checked first, whatever the authzid, so a refused
    authzid costs the same time as a wrong password.
    """
    user = await userdb.averify(creds.authcid, creds.password)
    if user is None or not authorized(creds.authzid, user):
        return None
    return user
