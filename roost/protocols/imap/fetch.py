"""FETCH data items as the server writes them (RFC 3501 7.4.2).

ENVELOPE and BODYSTRUCTURE from a parsed MIME tree, BODY[section]<partial>
from the served (CRLF) octets, and the flag list.  Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from roost.mailstore import mime
from roost.protocols.imap.commands import FetchAtt, Section
from roost.protocols.imap.grammar import literal, nstring, quoted_or_literal

_FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def format_flags(flags: Iterable[str], is_recent: bool = False) -> bytes:
    ordered = [f for f in _FLAG_ORDER if f in flags]
    ordered += sorted(f for f in flags if f not in _FLAG_ORDER)
    if is_recent:
        ordered.append("\\Recent")
    return b"(" + " ".join(ordered).encode("ascii") + b")"


def _addresses(items: list[mime.Address]) -> bytes:
    if not items:
        return b"NIL"
    parts = [
        b"("
        + b" ".join(
            [nstring(a.name), nstring(a.route), nstring(a.mailbox), nstring(a.host)]
        )
        + b")"
        for a in items
    ]
    return b"(" + b"".join(parts) + b")"


def envelope(part: mime.Part) -> bytes:
    env = mime.envelope(part)
    fields = [
        nstring(env.date),
        nstring(env.subject),
        _addresses(env.from_),
        _addresses(env.sender),
        _addresses(env.reply_to),
        _addresses(env.to),
        _addresses(env.cc),
        _addresses(env.bcc),
        nstring(env.in_reply_to),
        nstring(env.message_id),
    ]
    return b"(" + b" ".join(fields) + b")"


def _string(text: str) -> bytes:
    return quoted_or_literal(text.encode("utf-8"))


def _params(params: list[tuple[str, str]]) -> bytes:
    if not params:
        return b"NIL"
    items = [_string(k.upper()) + b" " + _string(v) for k, v in params]
    return b"(" + b" ".join(items) + b")"


def _disposition(part: mime.Part) -> bytes:
    raw = part.header("Content-Disposition")
    if raw is None:
        return b"NIL"
    value, params = mime.parse_parameters(raw)
    if not value:
        return b"NIL"
    return b"(" + _string(value.upper()) + b" " + _params(params) + b")"


def _language(part: mime.Part) -> bytes:
    raw = part.header("Content-Language")
    if raw is None:
        return b"NIL"
    tags = [t for t in re.split(rb"[\s,]+", raw) if t]
    if not tags:
        return b"NIL"
    return b"(" + b" ".join(quoted_or_literal(t) for t in tags[:16]) + b")"


def _leaf_fields(data: bytes, part: mime.Part) -> list[bytes]:
    encoding = part.header("Content-Transfer-Encoding")
    enc = encoding.strip().upper() if encoding else b"7BIT"
    return [
        _string(part.maintype.upper()),
        _string(part.subtype.upper()),
        _params(part.params),
        nstring(part.header("Content-ID")),
        nstring(part.header("Content-Description")),
        quoted_or_literal(enc or b"7BIT"),
        str(part.end - part.body_start).encode("ascii"),
    ]


def body_structure(data: bytes, part: mime.Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of a part, iteratively bounded
    by the parser's depth limit (case 020)."""
    if part.is_multipart:
        children = b"".join(body_structure(data, c, extended) for c in part.children)
        fields = [children + b" " + _string(part.subtype.upper())]
        if extended:
            fields += [
                _params(part.params),
                _disposition(part),
                _language(part),
                nstring(part.header("Content-Location")),
            ]
        return b"(" + b" ".join(fields) + b")"

    fields = _leaf_fields(data, part)
    if part.message is not None:
        fields += [
            envelope(part.message),
            body_structure(data, part.message, extended),
            str(mime.body_lines(data, part)).encode("ascii"),
        ]
    elif part.maintype == "text":
        fields.append(str(mime.body_lines(data, part)).encode("ascii"))
    if extended:
        fields += [
            nstring(part.header("Content-MD5")),
            _disposition(part),
            _language(part),
            nstring(part.header("Content-Location")),
        ]
    return b"(" + b" ".join(fields) + b")"


def section_bytes(data: bytes, root: mime.Part, section: Section) -> bytes | None:
    """The octets a BODY[section] names; None when the part does not exist
    (served as an empty string, as most servers do)."""
    if not section.part:
        return _text_of(data, root, section)
    part = mime.find_part(root, section.part)
    if part is None:
        return None
    if section.text == "MIME":
        return data[part.start : part.body_start]
    if section.text:
        if part.message is None:
            return None
        return _text_of(data, part.message, section)
    return data[part.body_start : part.end]


def _text_of(data: bytes, message: mime.Part, section: Section) -> bytes:
    header = data[message.start : message.body_start]
    if section.text == "":
        return data[message.start : message.end]
    if section.text == "TEXT":
        return data[message.body_start : message.end]
    if section.text == "HEADER":
        return header
    return _header_fields(header, section)


def _header_fields(header: bytes, section: Section) -> bytes:
    wanted = {name.lower() for name in section.fields}
    keep_matching = section.text == "HEADER.FIELDS"
    out = bytearray()
    for field in re.split(rb"\r\n(?![ \t])", header):
        if not field:
            continue
        name = field.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
        if (name in wanted) == keep_matching and b":" in field:
            out += field + b"\r\n"
    out += b"\r\n"  # RFC 3501 6.4.5: the blank line is included
    return bytes(out)


def body_item(att: FetchAtt, content: bytes | None) -> bytes:
    """``BODY[section]<origin> {n}...`` for one FETCH item."""
    assert att.section is not None
    label = b"BODY[" + att.section.label().encode("ascii") + b"]"
    value = content or b""
    if att.partial is not None:
        start, count = att.partial
        value = value[start : start + count]
        label += b"<%d>" % start
    return label + b" " + literal(value)
