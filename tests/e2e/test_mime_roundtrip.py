"""One MIME message in by SMTP and out by IMAP and POP3, byte for byte.

The message is multipart/mixed with a base64 binary attachment, an
RFC 2047 encoded Subject and From, and raw UTF-8 in header fields (sent
with SMTPUTF8, RFC 6532 3.2) and in an 8bit text part (BODY=8BITMIME).
What comes back must be exactly what was sent, after the trace header
fields we prepend (Return-Path, Delivered-To, Received; RFC 5321 4.4).
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import imaplib
import poplib
import re
import smtplib
import uuid

from tests.conftest import RoostServer

TRACE_FIELDS = {b"return-path", b"delivered-to", b"received"}


def attachment() -> bytes:
    # every byte value, NUL and CR/LF included, then some that do not repeat
    blob = bytes(range(256)) * 8
    return blob + hashlib.sha512(blob).digest() * 3


def build_message(tok: str) -> bytes:
    encoded = base64.encodebytes(attachment()).replace(b"\n", b"\r\n")
    subject = base64.b64encode(f"Grüße {tok} – ünïcödé ✓".encode()).decode()
    lines = [
        "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <sender@example.org>",
        "To: Zoë Ŝtraße <alice@example.test>",
        f"Subject: =?UTF-8?B?{subject}?=",
        f"Message-ID: <{tok}@example.org>",
        "X-Raw-UTF8: 日本語のヘッダー, ünïcödé",
        "X-Folded: first part",
        "\tsecond part after a fold",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="=_roost_boundary"',
        "",
        "This is the preamble.",
        "--=_roost_boundary",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Grüße aus Köln — 8bit text.",
        ".a line that starts with a dot",
        "..and one with two",
        "trailing white space   ",
        "",
        "--=_roost_boundary",
        'Content-Type: application/octet-stream; name="blob.bin"',
        'Content-Disposition: attachment; filename="blob.bin"',
        "Content-Transfer-Encoding: base64",
        "",
    ]
    head = "\r\n".join(lines).encode() + b"\r\n"
    tail = b"--=_roost_boundary--\r\nThe epilogue.\r\n"
    return head + encoded + tail


def split_trace(fetched: bytes, sent: bytes) -> bytes:
    """Check fetched is trace fields + sent; return the trace fields."""
    assert fetched.endswith(sent), "message changed in transit"
    prefix = fetched[: len(fetched) - len(sent)]
    names = re.findall(rb"^([!-9;-~]+):", prefix, re.M)
    assert set(n.lower() for n in names) <= TRACE_FIELDS, names
    # every prefix line is a field or a folded continuation of one
    for line in prefix.split(b"\r\n")[:-1]:
        assert line[:1] in (b" ", b"\t") or b":" in line, line
    return prefix


def imap_body(server: RoostServer, tok: str) -> bytes:
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        client.login("alice", server.users["alice"])
        client.select("INBOX", readonly=True)
        typ, data = client.uid("SEARCH", "HEADER", "Message-ID", tok)
        assert typ == "OK"
        uids = data[0].split()
        assert len(uids) == 1, data
        typ, data = client.uid("FETCH", uids[0], "(BODY.PEEK[] RFC822.SIZE)")
        assert typ == "OK"
        meta, body = data[0]
        # the items may come in any order: before or after the literal
        after = data[1] if isinstance(data[1], bytes) else b""
        size = re.search(rb"RFC822\.SIZE (\d+)", meta + after)
        assert size is not None, data
        size = int(size.group(1))
        # RFC 3501 2.3.4: the size is that of the message as fetched
        assert size == len(body)
        return body
    finally:
        client.logout()


def pop3_body(server: RoostServer, tok: str) -> bytes:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=30)
    try:
        client.user("alice")
        client.pass_(server.users["alice"])
        _, listing, _ = client.list()
        sizes = dict(line.split() for line in listing)
        for number, octets in sizes.items():
            _, lines, _ = client.retr(int(number))
            body = b"\r\n".join(lines) + b"\r\n"
            if f"<{tok}@example.org>".encode() in body:
                # RFC 1939 5: LIST sizes count CRLF line ends
                assert int(octets) == len(body)
                return body
        raise AssertionError("message not found over POP3")
    finally:
        client.quit()


def test_multipart_utf8_binary_roundtrip(roost_server: RoostServer) -> None:
    tok = uuid.uuid4().hex
    sent = build_message(tok)
    with smtplib.SMTP("127.0.0.1", roost_server.port("smtp")) as client:
        client.ehlo("client.example.org")
        assert client.has_extn("smtputf8")
        client.sendmail(
            "sender@example.org",
            ["alice@example.test"],
            sent,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    stored = roost_server.wait_for_text("alice", tok.encode())
    # on disk with LF line ends, as postfix's local and dovecot store
    assert stored.endswith(sent.replace(b"\r\n", b"\n"))

    by_imap = imap_body(roost_server, tok)
    trace = split_trace(by_imap, sent)
    assert b"Delivered-To: alice@example.test\r\n" in trace
    assert by_imap == pop3_body(roost_server, tok)

    parsed = email.message_from_bytes(by_imap, policy=email.policy.default)
    assert tok in str(parsed["Subject"])
    assert "Grüße" in str(parsed["Subject"])
    assert parsed["X-Raw-UTF8"] == "日本語のヘッダー, ünïcödé"
    parts = list(parsed.iter_attachments())
    assert [p.get_filename() for p in parts] == ["blob.bin"]
    assert parts[0].get_content() == attachment()
