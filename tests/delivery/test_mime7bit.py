"""8-bit to 7-bit MIME downgrade for peers without 8BITMIME (RFC 6152 3)."""

from __future__ import annotations

import email
import email.policy
import quopri

from hypothesis import given
from hypothesis import strategies as st

from roost.delivery.mime7bit import has_8bit, qp_encode, to_7bit


def decoded_parts(data: bytes) -> list[bytes]:
    message = email.message_from_bytes(data, policy=email.policy.default)
    return [
        part.get_payload(decode=True)
        for part in message.walk()
        if not part.is_multipart()
    ]


def test_leaf_body_becomes_quoted_printable() -> None:
    # case 006: the octets arrive intact after decoding
    data = (
        b"Subject: x\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nd\xe9j\xe0 vu \xff\r\n"
    )
    out = to_7bit(data)
    assert out is not None
    assert not has_8bit(out)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in out
    assert b"8bit" not in out
    assert decoded_parts(out) == [b"d\xe9j\xe0 vu \xff\r\n"]


def test_multipart_converts_only_8bit_parts() -> None:
    data = (
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"preamble\r\n--B\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n--B\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--B--\r\nepilogue\r\n"
    )
    out = to_7bit(data)
    assert out is not None
    assert not has_8bit(out)
    assert b"\r\nAAEC\r\n--B--\r\nepilogue\r\n" in out
    assert decoded_parts(out) == ["café".encode(), b"\x00\x01\x02"]


def test_nested_message_rfc822() -> None:
    inner = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\n\xe9t\xe9\r\n"
    data = b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    out = to_7bit(data)
    assert out is not None
    assert not has_8bit(out)
    assert b"=E9t=E9" in out


def test_non_mime_message_gains_mime_headers() -> None:
    out = to_7bit(b"Received: x\r\nSubject: x\r\n\r\n\xe9\r\n")
    assert out is not None
    assert out.startswith(b"Received: x\r\n")
    assert b"MIME-Version: 1.0\r\n" in out
    assert b"charset=unknown-8bit" in out


def test_seven_bit_message_is_untouched() -> None:
    data = b"Subject: x\r\n\r\nplain\r\n"
    assert to_7bit(data) is data


def test_impossible_conversions() -> None:
    assert to_7bit(b"Subject: caf\xe9\r\n\r\nbody\r\n") is None
    multipart = (
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n\xe9 preamble\r\n"
        b"--B\r\n\r\nx\r\n--B--\r\n"
    )
    assert to_7bit(multipart) is None
    no_boundary = b"Content-Type: multipart/mixed\r\n\r\n\xe9\r\n"
    assert to_7bit(no_boundary) is None


@given(st.binary(max_size=300))
def test_qp_round_trip(body: bytes) -> None:
    # RFC 2045 6.7: the encoding is 7-bit, short-lined and reversible
    body = body.replace(b"\r", b"").replace(b"\n", b"\r\n")
    encoded = qp_encode(body)
    assert not has_8bit(encoded)
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert quopri.decodestring(encoded) == body
