"""Case 030: SMTPUTF8 and IDN addresses.

RFC 5321 2.4 / 4.1.2: without SMTPUTF8 the envelope is US-ASCII (553 or
501). RFC 6531 3.3: with the SMTPUTF8 MAIL parameter UTF-8 is allowed in
local parts and domains, but malformed UTF-8 is still a syntax error.
RFC 5890/5891: `bücher.test` and `xn--bcher-kva.test` are one domain,
compared after IDNA conversion (both in mydestination checks). RFC 6531
3.2: an internationalised message is never relayed to a hop without
SMTPUTF8 (bounce with X.6.7/X.6.9), an all-ASCII one is sent without
the parameter.
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
    hop = CaptureSmtp(extensions=("PIPELINING", "8BITMIME"))  # no SMTPUTF8
    yield hop
    hop.close()


@pytest.fixture(scope="module")
def server(capture: CaptureSmtp) -> Iterator[CaseServer]:
    extra = {
        "mydestination": "$myhostname, example.test, bücher.test, localhost",
        "relayhost": f"[{HOST}]:{capture.port}",
        "smtp_tls_security_level": "none",
    }
    yield from running_server(extra)


def test_case_030_transcript(server: CaseServer) -> None:
    server.clear_mail("anna")
    smtp = server.smtp()
    assert b"250 SMTPUTF8\r\n" in smtp.ehlo() or b"250-SMTPUTF8\r\n" in smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<josé@example.org>".encode()) in (553, 501, 550)
    assert smtp.cmd("MAIL FROM:<josé@example.org> SMTPUTF8".encode()) == 250
    assert smtp.cmd("RCPT TO:<anna@bücher.test>".encode()) == 250
    assert smtp.cmd(b"RCPT TO:<anna@xn--bcher-kva.test>") == 250
    assert smtp.cmd(b"RCPT TO:<anna@XN--BCHER-KVA.TEST>") == 250
    assert smtp.cmd("RCPT TO:<anna@BÜCHER.test>".encode()) == 250
    assert smtp.cmd("RCPT TO:<δοκιμή@example.test>".encode()) == 550
    assert smtp.cmd(b"RCPT TO:<\xff\xfe@example.test>") in (501, 553)
    assert smtp.cmd(b"RCPT TO:<anna@b\xc3\xbc\xffcher.test>") in (501, 553)
    assert smtp.cmd("DATA") == 354
    body = (
        "From: José <josé@example.org>\r\nTo: anna@bücher.test\r\n"
        "Subject: Grüße\r\n\r\nok\r\n"
    )
    smtp.send(body.encode() + b".\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("anna", 1)  # one copy for all four forms
    assert path.read_bytes().endswith(body.encode().replace(b"\r\n", b"\n"))


@pytest.mark.parametrize(
    "line",
    [
        "RCPT TO:<anna@bücher.test>",
        "RCPT TO:<ännä@example.test>",
    ],
)
def test_case_030_utf8_rcpt_needs_smtputf8(server: CaseServer, line: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd(line.encode()) in (553, 501, 550)
    assert smtp.cmd(b"RCPT TO:<anna@xn--bcher-kva.test>") == 250


def test_case_030_bad_utf8_in_mail_even_with_smtputf8(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    for raw in (b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"):
        assert smtp.cmd(b"MAIL FROM:<a" + raw + b"@example.org> SMTPUTF8") in (501, 553)
    assert smtp.cmd("MAIL FROM:<josé@example.org> SMTPUTF8".encode()) == 250


def test_case_030_ascii_message_relayed_without_smtputf8(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    before = len(capture.transactions)
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org> SMTPUTF8") == 250
    assert smtp.cmd("RCPT TO:<user@elsewhere.example>") == 250
    assert smtp.cmd("DATA") == 354
    smtp.send(b"Subject: ascii\r\n\r\nascii\r\n.\r\n")
    assert smtp.code() == 250
    poll(lambda: len(capture.transactions) > before, "the relayed ASCII message")
    mail, _, _ = capture.transactions[-1]
    assert b"SMTPUTF8" not in mail.upper()


def test_case_030_idn_next_hop_domain_in_a_labels(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    before = len(capture.transactions)
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org> SMTPUTF8") == 250
    assert smtp.cmd("RCPT TO:<user@bücher.example.org>".encode()) == 250
    assert smtp.cmd("DATA") == 354
    smtp.send(b"Subject: idn domain\r\n\r\nx\r\n.\r\n")
    assert smtp.code() == 250
    poll(lambda: len(capture.transactions) > before, "the relayed IDN message")
    mail, rcpts, _ = capture.transactions[-1]
    sent = [r for _, rs, _ in capture.transactions[before:] for r in rs]
    assert any(
        r.startswith(b"RCPT TO:<user@xn--bcher-kva.example.org>") for r in sent
    ), capture.transactions[before:]
    assert b"SMTPUTF8" not in mail.upper()


def test_case_030_utf8_message_bounced_not_sent(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    """A local UTF-8 sender so the bounce lands in a Maildir we can read."""
    server.clear_mail("anna")
    before = len(capture.transactions)
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<anna@bücher.test> SMTPUTF8".encode()) == 250
    assert smtp.cmd("RCPT TO:<josé@elsewhere.example>".encode()) == 250
    assert smtp.cmd("DATA") == 354
    smtp.send("Subject: Grüße\r\n\r\nok\r\n.\r\n".encode())
    assert smtp.code() == 250
    (bounce,) = server.wait_messages("anna", 1)
    text = bounce.read_bytes()
    assert b"5.6.7" in text or b"5.6.9" in text or b"5.6.8" in text, text[:2000]
    assert len(capture.transactions) == before
    assert not any("josé".encode() in c for c in capture.commands)
