"""Internationalised names on the way out: what needs SMTPUTF8, what not.

RFC 6531 3.2 / RFC 5890: a domain has an ASCII form, its A-labels, so
`user@bücher.example` goes to any hop as `user@xn--bcher-kva.example`;
only a UTF-8 local part (or a UTF-8 header of an SMTPUTF8 message)
needs a peer that offers SMTPUTF8 (case 030).

The trace fields are a special case: our own Received field names the
recipient as it came (`for <anna@bücher.test>`), and one about an IDN
domain would make every such message "internationalised".  For a hop
without SMTPUTF8, `ascii_trace` writes the domains in Received fields
as A-labels and drops a `for` clause whose local part is UTF-8 (RFC
6857's downgrade of a Received field drops such a clause too; it is
optional, RFC 5321 4.4).  What stays non-ASCII after that is a real
UTF-8 header, and the message needs SMTPUTF8.
"""

from __future__ import annotations

import re

from roost.delivery.dns import DnsError, to_ascii_domain

# Patterns without nested repeats: linear in the field's length, however
# the sender built its own Received fields.
_ANGLE_ADDRESS = re.compile(r"<([^<>\s]*)>")
_FOR_CLAUSE = re.compile(r"\bfor\s+<([^<>]*)>", re.IGNORECASE)
_WORD = re.compile(r"[^\s()<>\[\];]+")
_RECEIVED = b"received:"


def wire_address(address: str) -> str:
    """The address as sent: domain in A-label form (RFC 5890), so only
    a UTF-8 local part still needs SMTPUTF8.  An address whose domain
    is no valid IDN stays as it is (and then needs SMTPUTF8)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.startswith("[") or domain.isascii():
        return address
    try:
        return f"{local}@{to_ascii_domain(domain)}"
    except DnsError:
        return address


def utf8_addr_xtext(address: str) -> str:
    """RFC 6533 3 utf-8-addr-xtext: printable ASCII but "+", "=" and
    "\\" as itself, every other character as \\x{HEX}."""
    out = []
    for char in address:
        code = ord(char)
        if 0x21 <= code <= 0x7E and char not in "+=\\":
            out.append(char)
        else:
            out.append(f"\\x{{{code:02X}}}")
    return "".join(out)


def ascii_trace(data: bytes) -> bytes:
    """data with its Received fields made ASCII where that loses nothing
    but a UTF-8 `for` address (see the module note); the rest as is."""
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[: end + 2]
    if header.isascii():
        return data
    fields = _fields(header)
    changed = [_ascii_received(f) if f[:9].lower() == _RECEIVED else f for f in fields]
    return b"".join(changed) + data[len(header) :]


def _fields(header: bytes) -> list[bytes]:
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _ascii_received(field: bytes) -> bytes:
    if field.isascii():
        return field
    try:
        text = field.decode("utf-8")
    except UnicodeDecodeError:
        return field
    text = _ANGLE_ADDRESS.sub(lambda m: f"<{wire_address(m.group(1))}>", text)
    text = _without_utf8_for_clauses(text)
    text = _WORD.sub(lambda m: _ascii_host(m.group(0)), text)
    return text.encode() if text.isascii() else field


def _without_utf8_for_clauses(text: str) -> str:
    # the clause goes with the white space (folding included) before it
    kept: list[str] = []
    start = 0
    for found in _FOR_CLAUSE.finditer(text):
        if found.group(1).isascii():
            continue
        kept.append(text[start : found.start()].rstrip())
        start = found.end()
    return "".join(kept) + text[start:]


def _ascii_host(word: str) -> str:
    # host names have dots; a lone word is text (a comment), not a name
    if word.isascii() or "." not in word.strip("."):
        return word
    try:
        return to_ascii_domain(word)
    except DnsError:
        return word
