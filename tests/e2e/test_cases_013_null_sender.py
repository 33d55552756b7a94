"""Case 013: the null reverse path `<>` and bounce loops.

RFC 5321 4.1.2 / 4.5.5: `MAIL FROM:<>` is valid and MUST be accepted for
DSNs. RFC 5321 6.1: DSNs are sent with a null reverse path, and no DSN is
ever sent about a message whose reverse path is null; 3.6.3: no
notification about a notification. 4.5.5: forwarding keeps `<>`. 6.3:
an alias loop ends in one bounce ("mail forwarding loop").
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

ALIASES = """\
fwd: dead@relay.example.org
loop1: loop2
loop2: loop1
postmaster: bob
"""
REFUSE = {
    "dead@relay.example.org": "550 5.1.1 <dead@relay.example.org>: no such user",
    "sender@example.org": "550 5.1.1 <sender@example.org>: no such user",
}


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureSmtp]:
    hop = CaptureSmtp(refuse_rcpt=REFUSE)
    yield hop
    hop.close()


@pytest.fixture(scope="module")
def server(capture: CaptureSmtp) -> Iterator[CaseServer]:
    extra = {
        "relayhost": f"[{HOST}]:{capture.port}",
        "smtp_tls_security_level": "none",
    }
    yield from running_server(extra, aliases=ALIASES)


def mail_lines(capture: CaptureSmtp) -> list[bytes]:
    return [c for c in capture.commands if c[:4].upper() == b"MAIL"]


def test_case_013_part_a_null_sender_accepted(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo("peer.example.org")
    data = (
        b"From: MAILER-DAEMON@peer.example.org\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Auto-Submitted: auto-replied\r\n\r\nx\r\n.\r\n"
    )
    assert smtp.transaction("", ["alice@example.test"], data) == 250
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().startswith(b"Return-Path: <>\n")


def test_case_013_part_b_null_sender_failure_sends_no_dsn(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    before = len(mail_lines(capture))
    smtp = server.smtp()
    smtp.ehlo("peer.example.org")
    data = b"Subject: null sender to forwarder\r\n\r\nx\r\n.\r\n"
    assert smtp.transaction("", ["fwd@example.test"], data) == 250
    poll(lambda: len(mail_lines(capture)) > before, "the forwarded attempt")
    server.wait_queue_empty()
    # forwarded with MAIL FROM:<> (RFC 5321 4.5.5) and nothing after it
    (attempt,) = mail_lines(capture)[before:]
    assert attempt.startswith((b"MAIL FROM:<>\r\n", b"MAIL FROM:<> "))


def test_case_013_part_c_dsn_has_null_sender_and_no_double_bounce(
    server: CaseServer, capture: CaptureSmtp
) -> None:
    before = len(mail_lines(capture))
    smtp = server.smtp()
    smtp.ehlo("client.example.org")
    data = b"Subject: to forwarder\r\n\r\nx\r\n.\r\n"
    assert smtp.transaction("sender@example.org", ["fwd@example.test"], data) == 250
    # the forward attempt, then Roost's DSN to sender@example.org
    poll(lambda: len(mail_lines(capture)) >= before + 2, "the DSN attempt")
    server.wait_queue_empty()
    attempts = mail_lines(capture)[before:]
    assert attempts[0].startswith(b"MAIL FROM:<sender@example.org>")
    assert attempts[1].startswith(b"MAIL FROM:<>")
    # the refused DSN makes no further DSN leave the machine (RFC 5321 3.6.3)
    assert len(attempts) == 2, attempts
    for line in capture.commands:
        assert not line.upper().startswith(b"RCPT TO:<>")


def test_case_013_part_d_alias_loop_bounces_once(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    data = b"Subject: loop\r\n\r\nx\r\n.\r\n"
    code = smtp.transaction("alice@example.test", ["loop1@example.test"], data)
    assert code == 250
    (bounce,) = server.wait_messages("alice", 1)
    text = bounce.read_bytes()
    assert text.startswith(b"Return-Path: <>\n")
    assert b"loop" in text.lower()
    server.wait_queue_empty()
    assert len(server.messages("alice")) == 1


def test_case_013_part_d_alias_loop_from_null_sender_is_dropped(
    server: CaseServer,
) -> None:
    for user in ("alice", "bob"):
        server.clear_mail(user)
    smtp = server.smtp()
    smtp.ehlo()
    code = smtp.transaction("", ["loop2@example.test"], b"Subject: l\r\n\r\nx\r\n.\r\n")
    assert code == 250
    server.wait_queue_empty()
    # no DSN to <>: nobody gets mail, except possibly one postmaster notice
    assert server.messages("alice") == []
    assert len(server.messages("bob")) <= 1
