"""Case 007: quoted local parts in MAIL/RCPT.

RFC 5321 4.1.2: `Local-part = Dot-string / Quoted-string`; qtextSMTP
includes SP and `>`, quoted-pairSMTP is `\\` %d32-126, so
`"bob> NOTIFY=NEVER"` is one local part with no parameter. All quoted
forms are equivalent (`"alice"` is `alice`); the reverse path keeps its
quotes with minimal quoting (Return-Path, relayed MAIL FROM). Malformed
local parts get 501 (4.1.2, 4.1.4). Local parts are case-preserving (2.4).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import (
    HOST,
    CaptureSmtp,
    CaseServer,
    poll,
    running_server,
)


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureSmtp]:
    hop = CaptureSmtp()
    yield hop
    hop.close()


@pytest.fixture(scope="module")
def server(capture: CaptureSmtp) -> Iterator[CaseServer]:
    extra = {"relayhost": f"[{HOST}]:{capture.port}", "smtp_tls_security_level": "none"}
    yield from running_server(extra)


def test_case_007_quoted_local_parts_transcript(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd('MAIL FROM:<"Jane Doe"@example.org>') == 250
    assert smtp.cmd('RCPT TO:<"alice"@example.test>') == 250
    assert smtp.cmd('RCPT TO:<"bob> NOTIFY=NEVER"@example.test>') == 550
    assert smtp.cmd('RCPT TO:<" "@example.test>') == 550
    assert smtp.cmd('RCPT TO:<just"not"right@example.test>') == 501
    assert smtp.cmd('RCPT TO:<"a\\"b\\\\c"@example.test>') == 550
    assert smtp.cmd("DATA") == 354
    smtp.send(b"Subject: q\r\n\r\nx\r\n.\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().startswith(b'Return-Path: <"Jane Doe"@example.org>\n')


@pytest.mark.parametrize(
    "address",
    [
        '"alice"@example.test',
        '"al\\ice"@example.test',  # quoted-pair of an ordinary char
        "alice@example.test",
        "ALICE@example.test",  # mailbox lookup case-insensitive
    ],
)
def test_case_007_quoted_forms_are_equivalent(server: CaseServer, address: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd(f"RCPT TO:<{address}>") == 250


@pytest.mark.parametrize(
    "path",
    [
        '<just"not"right@example.org>',
        '<"unterminated@example.org>',
        "<a..b@example.org>",
        "<.a@example.org>",
        "<a.@example.org>",
        '<"a\x7fb"@example.org>',
        "<a b@example.org>",
        '<"x"y@example.org>',
    ],
)
def test_case_007_malformed_local_parts_get_501(server: CaseServer, path: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"MAIL FROM:{path}") == 501
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250


def test_case_007_relay_keeps_quotes_and_case(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    code = smtp.transaction(
        '"Jane Doe"@example.org',
        ['"Odd User"@elsewhere.example', "MixedCase@elsewhere.example"],
        b"Subject: relay\r\n\r\nx\r\n.\r\n",
    )
    assert code == 250
    poll(lambda: len(capture.transactions) >= 1, "the relayed message")
    mail, rcpts, _ = capture.transactions[-1]
    assert mail.startswith(b'MAIL FROM:<"Jane Doe"@example.org>')
    assert any(r.startswith(b'RCPT TO:<"Odd User"@elsewhere.example>') for r in rcpts)
    assert any(r.startswith(b"RCPT TO:<MixedCase@elsewhere.example>") for r in rcpts)
