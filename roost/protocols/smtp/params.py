"""ESMTP parameters of MAIL and RCPT (RFC 5321 4.1.2 esmtp-param).

Keywords and the values BODY, RET and NOTIFY are case-insensitive
(RFC 5321 2.4; case 006: `BODY=7bit` is legal). Each parameter may
appear once (RFC 1870 6, RFC 6152 3, RFC 3461 4). Unknown keywords
get 555 5.5.4 (RFC 5321 4.1.1.11). xtext values (RFC 3461 4) are
decoded here; ENVID and ORCPT are carried, not interpreted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from roost.protocols.smtp.reply import (
    BAD_PARAMETER,
    BAD_SIZE,
    DUPLICATE_PARAMETER,
    MESSAGE_TOO_BIG,
    UNKNOWN_PARAMETER,
    Reply,
    SmtpError,
)

_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# RFC 1870 4: size-value ::= 1*20DIGIT
_SIZE = re.compile(r"^[0-9]{1,20}$")
_NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 3461 4.4: ENVID is at most 100 characters (before decoding)
MAX_ENVID_CHARS = 100


@dataclass(frozen=True, slots=True)
class MailParams:
    """Parameters of MAIL FROM (RFC 1870, 6152, 6531, 3461, 4954)."""

    size: int | None = None
    body: str | None = None  # "7BIT" or "8BITMIME"
    smtputf8: bool = False
    ret: str | None = None  # "FULL" or "HDRS"
    envid: str | None = None
    auth: str | None = None  # RFC 4954 5: "<>" or an xtext-decoded mailbox


@dataclass(frozen=True, slots=True)
class RcptParams:
    """Parameters of RCPT TO (RFC 3461 4.1, 4.2)."""

    notify: tuple[str, ...] | None = None  # ("NEVER",) or subset of words
    orcpt: str | None = None  # "addr-type;decoded-value"


def split_params(words: list[str]) -> dict[str, str | None]:
    """`KEY[=value]` words as an upper-cased key to value mapping."""
    found: dict[str, str | None] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not _KEYWORD.match(key) or (eq and not _is_esmtp_value(value)):
            raise SmtpError(BAD_PARAMETER)
        key = key.upper()
        if key in found:
            raise SmtpError(DUPLICATE_PARAMETER.with_text(f"Duplicate {key} parameter"))
        found[key] = value if eq else None
    return found


def _is_esmtp_value(value: str) -> bool:
    # RFC 5321 esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531)
    return bool(value) and all(
        (33 <= ord(c) <= 126 and c != "=") or ord(c) >= 128 for c in value
    )


def parse_mail_params(words: list[str], *, size_limit: int) -> MailParams:
    """Parse MAIL parameters; size_limit 0 means no fixed maximum.

    Raises SmtpError with 501/555, or 552 5.3.4 when SIZE= declares
    more than the limit (RFC 1870 6.1).
    """
    found = split_params(words)
    present = "SIZE" in found
    size = _size(found.pop("SIZE", None), present, size_limit)
    body = _choice(found, "BODY", {"7BIT", "8BITMIME"})
    ret = _choice(found, "RET", {"FULL", "HDRS"})
    smtputf8 = "SMTPUTF8" in found
    if smtputf8 and found.pop("SMTPUTF8") is not None:
        raise SmtpError(BAD_PARAMETER)
    envid = _xtext_param(found, "ENVID")
    if envid is not None and len(envid) > MAX_ENVID_CHARS:
        raise SmtpError(BAD_PARAMETER)
    auth = _xtext_param(found, "AUTH")
    if found:
        raise SmtpError(UNKNOWN_PARAMETER)
    return MailParams(size, body, smtputf8, ret, envid, auth)


def _size(value: str | None, present: bool, size_limit: int) -> int | None:
    if not present:
        return None
    if value is None or not _SIZE.match(value):
        raise SmtpError(BAD_SIZE)
    size = int(value)
    if size_limit and size > size_limit:
        raise SmtpError(MESSAGE_TOO_BIG)
    return size


def _choice(found: dict[str, str | None], key: str, allowed: set[str]) -> str | None:
    if key not in found:
        return None
    value = found.pop(key)
    if value is None:
        raise SmtpError(BAD_PARAMETER)
    if value.upper() not in allowed:
        # BODY=BINARYMIME needs CHUNKING, which is not offered (case 006)
        raise SmtpError(UNKNOWN_PARAMETER)
    return value.upper()


def _xtext_param(found: dict[str, str | None], key: str) -> str | None:
    if key not in found:
        return None
    value = found.pop(key)
    if value is None:
        raise SmtpError(BAD_PARAMETER)
    return decode_xtext(value, BAD_PARAMETER)


def decode_xtext(text: str, error: Reply) -> str:
    """RFC 3461 4: xtext, "+" HEXCHAR HEXCHAR escapes one octet."""
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        byte = raw[i]
        if byte == ord("+"):
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not re.fullmatch(rb"[0-9A-F]{2}", pair):
                raise SmtpError(error)
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(byte)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise SmtpError(error) from None


def parse_rcpt_params(words: list[str]) -> RcptParams:
    """Parse RCPT parameters (RFC 3461 NOTIFY and ORCPT)."""
    found = split_params(words)
    notify = _notify(found)
    orcpt = None
    if "ORCPT" in found:
        value = found.pop("ORCPT")
        addr_type, semi, xtext = (value or "").partition(";")
        if not semi or not _KEYWORD.match(addr_type) or not xtext:
            raise SmtpError(BAD_PARAMETER)
        orcpt = f"{addr_type};{decode_xtext(xtext, BAD_PARAMETER)}"
    if found:
        raise SmtpError(UNKNOWN_PARAMETER)
    return RcptParams(notify, orcpt)


def _notify(found: dict[str, str | None]) -> tuple[str, ...] | None:
    if "NOTIFY" not in found:
        return None
    value = found.pop("NOTIFY")
    words = tuple(w.upper() for w in (value or "").split(","))
    # RFC 3461 4.1: NEVER alone, or a list of SUCCESS, FAILURE, DELAY
    if words == ("NEVER",):
        return words
    if not words or not set(words) <= _NOTIFY_WORDS or len(set(words)) != len(words):
        raise SmtpError(BAD_PARAMETER)
    return words
