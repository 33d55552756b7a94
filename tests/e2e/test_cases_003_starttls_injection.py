"""Case 003: plaintext pipelined after STARTTLS / STLS is discarded.

RFC 3207 4.2 (SMTP): after the handshake the protocol is reset and any
knowledge not obtained from TLS is discarded, so bytes that followed
`STARTTLS` in the same plaintext write are never executed, and `MAIL`
without a fresh `EHLO` gets 503. RFC 3501 6.2.1 (IMAP) and RFC 2595 4
(POP3 STLS) give the same rule.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


SMTP_TAILS = [
    b"RSET\r\n",
    b"MAIL FROM:<mitm@example.org>\r\nRCPT TO:<alice@example.test>\r\n",
    b"EHLO evil.example.org\r\n",
    b"RSET",  # no line end: a partial command must not survive either
]


@pytest.mark.parametrize("tail", SMTP_TAILS, ids=repr)
def test_case_003_smtp_starttls_discards_pipelined_plaintext(
    server: CaseServer, tail: bytes
) -> None:
    smtp = server.smtp()
    assert b"STARTTLS" in b"".join(smtp.ehlo())
    smtp.send(b"STARTTLS\r\n" + tail)
    assert smtp.code() == 220
    # the server now waits for a ClientHello: no plaintext answer to the tail
    if smtp.nothing_within(0.5):
        smtp.start_tls()
        reply = smtp.ehlo()
        # the first reply over TLS is the multi-line EHLO reply, nothing else
        assert reply[0].startswith(b"250-"), reply
        assert smtp.nothing_within(0.3)
        # RFC 3207 4.2: no transaction survives; state is "after EHLO"
        assert smtp.cmd("RCPT TO:<alice@example.test>") == 503
        assert smtp.cmd("NOOP") == 250
    else:
        # the stricter choice: a protocol violation closes the session
        assert smtp.buf == b"" or smtp.buf.startswith(b"421"), smtp.buf
    smtp.close()
    assert server.smtp().cmd("NOOP") == 250


def test_case_003_smtp_mail_after_tls_needs_new_ehlo(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("STARTTLS") == 220
    smtp.start_tls()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 503
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250


def test_case_003_imap_starttls_discards_pipelined_plaintext(
    server: CaseServer,
) -> None:
    imap = server.imap()
    imap.send(b"a1 STARTTLS\r\na2 NOOP\r\na3 LOGIN alice alice-pass\r\n")
    first = imap.read_line()
    assert first.startswith(b"a1 OK"), first
    if imap.nothing_within(0.5):
        imap.start_tls()
        reply = imap.command("b1", "NOOP")
        assert reply[-1].startswith(b"b1 OK"), reply
        # a2/a3 never answered, and the session is not logged in
        assert not any(line.startswith((b"a2", b"a3")) for line in reply)
        reply = imap.command("b2", "SELECT INBOX")
        assert reply[-1].startswith((b"b2 BAD", b"b2 NO")), reply
    else:
        assert imap.buf.startswith(b"* BYE") or imap.buf == b"", imap.buf
    imap.close()


def test_case_003_pop3_stls_discards_pipelined_plaintext(server: CaseServer) -> None:
    pop = server.pop3()
    pop.send(b"STLS\r\nUSER alice\r\nPASS alice-pass\r\n")
    first = pop.read_line()
    assert first.startswith(b"+OK"), first
    if pop.nothing_within(0.5):
        pop.start_tls()
        # USER/PASS sent in plaintext were dropped: still in AUTHORIZATION
        # without a user name, so PASS alone is refused
        assert pop.cmd("PASS alice-pass").startswith(b"-ERR")
        assert pop.cmd("NOOP").startswith(b"-ERR")  # NOOP is TRANSACTION only
        assert pop.cmd("CAPA").startswith(b"+OK")
    else:
        assert pop.buf.startswith(b"-ERR") or pop.buf == b"", pop.buf
    pop.close()
