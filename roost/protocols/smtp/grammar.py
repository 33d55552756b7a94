"""RFC 5321 envelope grammar: paths, mailboxes and ESMTP parameters.

The wire is bytes; this module decodes at one boundary. Without the
SMTPUTF8 parameter an address must be US-ASCII (RFC 5321 2.4, 4.1.2);
with it, atext, qtext and domain labels may hold UTF-8 (RFC 6531 3.3),
and invalid UTF-8 is a syntax error all the same.

A parsed address keeps its meaning and loses only what RFC 5321 lets a
receiver drop: the source route (4.1.1.3, "SHOULD be ignored") and
needless quoting (4.1.2, "all quoted forms MUST be treated as
equivalent"). `Mailbox.text` writes the address back with the minimum
quoting, so `"Jane Doe"@example.org` keeps its quotes and `"alice"`
becomes `alice`.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass

from roost.protocols.smtp.reply import (
    BAD_ADDRESS_SYNTAX,
    BAD_UTF8_ADDRESS,
    NEED_SMTPUTF8,
    Reply,
    SmtpError,
)

# RFC 5322 3.2.3 atext, the characters of an unquoted local part.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
# RFC 5321 4.1.2 qtextSMTP: printable ASCII but '"' and '\'.
_QTEXT = frozenset(chr(c) for c in range(32, 127)) - {'"', "\\"}
_LDH = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")
_GENERAL_TAG = re.compile(r"^[A-Za-z0-9-]*[A-Za-z0-9]$")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox as RFC 5321 4.1.2 defines it.

    `local_part` is the value with quoting removed (case kept, 2.4);
    `domain` is as sent (a name or an address literal in brackets).
    """

    local_part: str
    domain: str

    @property
    def text(self) -> str:
        """The address written with the minimum quoting needed; a bare
        local part for `<Postmaster>` (RFC 5321 4.5.1)."""
        local = quote_local_part(self.local_part)
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def is_address_literal(self) -> bool:
        return self.domain.startswith("[")


@dataclass(frozen=True, slots=True)
class Path:
    """A Reverse-path or Forward-path; mailbox None is the null path."""

    mailbox: Mailbox | None
    route: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The address without route or brackets; "" for `<>`."""
        return "" if self.mailbox is None else self.mailbox.text


def quote_local_part(local_part: str) -> str:
    """Write a local part as a Dot-string when it is one, else quoted."""
    if _is_dot_string(local_part):
        return local_part
    escaped = local_part.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def canonical_domain(domain: str) -> str:
    """The form of a domain to compare with others: lower case, and
    U-labels turned into A-labels (RFC 5890), so `bücher.test` and
    `xn--bcher-kva.test` match. Address literals are only lower-cased."""
    lowered = domain.lower().rstrip(".")
    if lowered.isascii() or lowered.startswith("["):
        return lowered
    try:
        return lowered.encode("idna").decode("ascii")
    except UnicodeError:
        return lowered


def decode_address_bytes(raw: bytes, *, smtputf8: bool) -> str:
    """Decode envelope text: US-ASCII, or UTF-8 under SMTPUTF8.

    Raises SmtpError: 553 5.6.7 for non-ASCII without SMTPUTF8 (RFC
    6531 3.2), 501 5.1.3 for bytes that are not UTF-8.
    """
    if raw.isascii():
        return raw.decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SmtpError(BAD_UTF8_ADDRESS) from None
    if not smtputf8:
        raise SmtpError(NEED_SMTPUTF8)
    return text


def parse_path(text: str, *, allow_null: bool, error: Reply) -> Path:
    """Parse `<...>` (RFC 5321 4.1.2 Path / Reverse-path).

    `text` is exactly the bracketed path. The source route (A-d-l) is
    checked and returned apart. Raises SmtpError(error) on bad syntax.
    """
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise SmtpError(error)
    inner = text[1:-1]
    if inner == "":
        if not allow_null:
            raise SmtpError(error)
        return Path(None)

    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise SmtpError(error)
        route = _parse_route(adl, error)
    return Path(parse_mailbox(inner, error=error), route)


def _parse_route(adl: str, error: Reply) -> tuple[str, ...]:
    hops = []
    for item in adl.split(","):
        if not item.startswith("@") or not is_domain(item[1:]):
            raise SmtpError(error)
        hops.append(item[1:])
    return tuple(hops)


def parse_mailbox(text: str, *, error: Reply = BAD_ADDRESS_SYNTAX) -> Mailbox:
    """Parse `Local-part "@" ( Domain / address-literal )`."""
    if text.startswith('"'):
        local_part, rest = _take_quoted(text, error)
        if not rest.startswith("@"):
            raise SmtpError(error)
        domain = rest[1:]
    else:
        local_part, at, domain = text.rpartition("@")
        if not at or not _is_dot_string(local_part):
            raise SmtpError(error)
    if not (is_domain(domain) or is_address_literal(domain)):
        raise SmtpError(error)
    return Mailbox(local_part, domain)


def _take_quoted(text: str, error: Reply) -> tuple[str, str]:
    """Split a leading Quoted-string off text; return (value, rest)."""
    value: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(value), text[i + 1 :]
        if ch == "\\":
            # RFC 5321 4.1.2 quoted-pairSMTP = "\" %d32-126
            if i + 1 >= len(text) or not 32 <= ord(text[i + 1]) <= 126:
                raise SmtpError(error)
            value.append(text[i + 1])
            i += 2
            continue
        if ch not in _QTEXT and ord(ch) < 128:
            raise SmtpError(error)
        value.append(ch)
        i += 1
    raise SmtpError(error)


def _is_dot_string(text: str) -> bool:
    if not text:
        return False
    return all(atom and all(_is_atext(c) for c in atom) for atom in text.split("."))


def _is_atext(ch: str) -> bool:
    # RFC 6531 3.3: UTF8-non-ascii is atext; decode_address_bytes has
    # already refused it when the transaction is not SMTPUTF8.
    return ch in _ATEXT or ord(ch) >= 128


def is_domain(text: str) -> bool:
    """RFC 5321 Domain: dot-separated LDH labels (U-labels allowed,
    RFC 6531 3.3). No trailing dot, no empty label."""
    if not text or len(text) > 255:
        return False
    for label in text.split("."):
        if not label or len(label) > 63:
            return False
        if label.isascii():
            if not _LDH.match(label):
                return False
        elif any(not (ch.isalnum() or ch == "-" or ord(ch) >= 128) for ch in label):
            return False
    return True


def is_address_literal(text: str) -> bool:
    """RFC 5321 4.1.3 address-literal: IPv4, IPv6 or a general one."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if _IPV4.match(inner):
        return all(int(part) <= 255 for part in inner.split("."))
    tag, colon, content = inner.partition(":")
    if not colon or not content:
        return False
    if tag.lower() == "ipv6":
        return _is_ipv6(content)
    printable = all(33 <= ord(c) <= 126 and c not in "[\\]" for c in content)
    return bool(_GENERAL_TAG.match(tag)) and printable


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def split_path_and_params(argument: str, *, error: Reply) -> tuple[str, list[str]]:
    """Split `<path> params...` where the path may hold quoted `>` and
    spaces (case 007): the closing `>` is the first one outside quotes.
    """
    if not argument.startswith("<"):
        raise SmtpError(error)
    in_quotes = False
    i = 1
    while i < len(argument):
        ch = argument[i]
        if ch == "\\" and in_quotes:
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == ">" and not in_quotes:
            break
        i += 1
    else:
        raise SmtpError(error)
    path, rest = argument[: i + 1], argument[i + 1 :]
    if rest and not rest.startswith(" "):
        raise SmtpError(error)
    return path, rest.split()
