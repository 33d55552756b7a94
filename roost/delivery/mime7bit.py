"""8-bit to 7-bit MIME conversion for next hops without 8BITMIME.

RFC 6152 3: a client MUST NOT send 8-bit data to a server that does
not offer 8BITMIME; it may convert the message to 7-bit MIME or
return it. `to_7bit(message)` walks the MIME tree (multipart bodies
and message/rfc822 parts included) and re-encodes every leaf whose
body holds 8-bit octets as quoted-printable (RFC 2045 6.7), setting
its Content-Transfer-Encoding. Everything else stays byte for byte.

It gives None when no faithful conversion exists: 8-bit octets in a
header, in a multipart preamble or epilogue, or MIME nesting deeper
than MAX_DEPTH. The caller then bounces (5.6.3), as postfix does.
"""

from __future__ import annotations

import re

MAX_DEPTH = 50
QP_LINE_CHARS = 76

_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_PARAM = re.compile(rb';\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)


def has_8bit(data: bytes) -> bool:
    return _EIGHT_BIT.search(data) is not None


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header section with its final CRLF, body after the blank line)."""
    if data.startswith(b"\r\n"):
        return b"", data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 2], data[end + 4 :]


def header_has_8bit(data: bytes) -> bool:
    return has_8bit(split_message(data)[0])


def _fields(header: bytes) -> list[bytes]:
    """Header fields, each with its continuation lines and CRLFs."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _field_value(fields: list[bytes], name: bytes) -> bytes | None:
    prefix = name.lower() + b":"
    for field in fields:
        if field.lower().startswith(prefix):
            return field[len(prefix) :].strip()
    return None


def _without(fields: list[bytes], name: bytes) -> list[bytes]:
    prefix = name.lower() + b":"
    return [f for f in fields if not f.lower().startswith(prefix)]


def to_7bit(data: bytes) -> bytes | None:
    """The message as 7-bit MIME, or None when that is impossible.

    A message that was not MIME at all gains `MIME-Version: 1.0` and,
    lacking a Content-Type, `text/plain; charset=unknown-8bit`
    (RFC 1428): its 8-bit octets are in no charset we can name."""
    converted = _convert(data, depth=0, default_type=b"text/plain")
    if converted is None or converted is data:
        return converted
    fields = _fields(split_message(data)[0])
    added = b""
    if _field_value(fields, b"MIME-Version") is None:
        added += b"MIME-Version: 1.0\r\n"
    if _field_value(fields, b"Content-Type") is None:
        added += b"Content-Type: text/plain; charset=unknown-8bit\r\n"
    header, body = split_message(converted)
    return header + added + b"\r\n" + body


def _convert(entity: bytes, depth: int, default_type: bytes) -> bytes | None:
    if depth > MAX_DEPTH:
        return None
    header, body = split_message(entity)
    if has_8bit(header):
        return None
    if not has_8bit(body):
        return entity
    fields = _fields(header)
    content_type = (_field_value(fields, b"Content-Type") or default_type).lower()

    if content_type.startswith(b"multipart/"):
        boundary = _PARAM.search(content_type_raw(fields) or b"")
        if boundary is None:
            return None
        token = boundary.group(1) or boundary.group(2)
        new_body = _convert_multipart(body, token, depth, content_type)
        if new_body is None:
            return None
        return _with_encoding(fields, b"7bit") + b"\r\n" + new_body
    if content_type.startswith(b"message/rfc822"):
        inner = _convert(body, depth + 1, b"text/plain")
        if inner is None:
            return None
        return _with_encoding(fields, b"7bit") + b"\r\n" + inner
    encoding = (_field_value(fields, b"Content-Transfer-Encoding") or b"").lower()
    if encoding in (b"quoted-printable", b"base64"):
        # already encoded, yet 8-bit: broken, and not ours to repair
        return None
    return _with_encoding(fields, b"quoted-printable") + b"\r\n" + qp_encode(body)


def content_type_raw(fields: list[bytes]) -> bytes | None:
    # boundary values are case-sensitive (RFC 2046 5.1.1)
    return _field_value(fields, b"Content-Type")


def _with_encoding(fields: list[bytes], encoding: bytes) -> bytes:
    kept = _without(fields, b"Content-Transfer-Encoding")
    return b"".join(kept) + b"Content-Transfer-Encoding: " + encoding + b"\r\n"


def _convert_multipart(
    body: bytes, boundary: bytes, depth: int, content_type: bytes
) -> bytes | None:
    """Converts each part between delimiter lines (RFC 2046 5.1.1:
    the CRLF before a delimiter belongs to the delimiter)."""
    delimiter = b"--" + boundary
    default = b"message/rfc822" if content_type.startswith(b"multipart/digest") else b""
    out: list[bytes] = []
    buffer: list[bytes] = []
    in_part = False
    for line in body.split(b"\r\n"):
        stripped = line.rstrip(b" \t")
        if stripped not in (delimiter, delimiter + b"--"):
            buffer.append(line)
            continue
        if not _flush(out, buffer, in_part, depth, default):
            return None
        out.append(line)
        in_part = stripped == delimiter
        buffer = []
    if not _flush(out, buffer, in_part, depth, default):
        return None
    return b"\r\n".join(out)


def _flush(
    out: list[bytes], lines: list[bytes], is_part: bool, depth: int, default: bytes
) -> bool:
    text = b"\r\n".join(lines)
    if not is_part:
        # preamble and epilogue carry no headers to announce an encoding
        if has_8bit(text):
            return False
        out.extend(lines)
        return True
    converted = _convert(text, depth + 1, default or b"text/plain")
    if converted is None:
        return False
    out.append(converted)
    return True


def qp_encode(body: bytes) -> bytes:
    """Quoted-printable for a body of CRLF lines (RFC 2045 6.7): line
    ends stay hard breaks, lines are at most 76 characters."""
    lines = body.split(b"\r\n")
    encoded = [_qp_line(line) for line in lines]
    return b"\r\n".join(encoded)


def _qp_line(line: bytes) -> bytes:
    out = bytearray()
    width = 0
    for position, byte in enumerate(line):
        last = position == len(line) - 1
        literal = (33 <= byte <= 126 and byte != ord("=")) or (
            byte in (9, 32) and not last
        )
        piece = bytes([byte]) if literal else b"=%02X" % byte
        # rule 5: soft break "=" so no line exceeds 76 characters
        if width + len(piece) > QP_LINE_CHARS - 1:
            out += b"=\r\n"
            width = 0
        out += piece
        width += len(piece)
    return bytes(out)
