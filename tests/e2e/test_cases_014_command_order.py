"""Case 014: SMTP command order and commands sent before the greeting.

RFC 5321 4.1.4: a mail transaction needs EHLO/HELO first; out-of-order
commands get 503 and leave the state as it was; NOOP, HELP, RSET, VRFY
work without EHLO; MAIL is refused inside an open transaction. RFC 5321
4.3.1 / RFC 2920 3.1: clients wait for the greeting, so pre-greeting
traffic is a protocol violation (postfix: 554 5.5.0 ... synchronization)
and the pipelined MAIL/RCPT are never run. Replies stay in command order
(RFC 2920 3.2).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, SmtpRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def test_case_014_order_transcript(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 503
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 503
    assert smtp.cmd("DATA") == 503
    assert smtp.cmd("NOOP") == 250
    assert smtp.cmd("RSET") == 250
    assert smtp.cmd("HELP") in (214, 211, 250, 502)
    assert smtp.cmd("VRFY alice") in (250, 252, 502, 550)
    smtp.ehlo()
    assert smtp.cmd("DATA") == 503
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 503
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd("MAIL FROM:<other@example.org>") == 503
    assert smtp.cmd("DATA") == 503  # still no recipient
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
    assert smtp.cmd("DATA") == 354
    smtp.send(b"Subject: order\r\n\r\nx\r\n.\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().startswith(b"Return-Path: <sender@example.org>\n")


def test_case_014_helo_then_transaction_and_reset(server: CaseServer) -> None:
    smtp = server.smtp()
    assert smtp.cmd("HELO client.example.org") == 250
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd("RSET") == 250
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 503  # RSET ended it
    # a second EHLO also resets the transaction (RFC 5321 4.1.4)
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    smtp.ehlo()
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 503


@pytest.mark.parametrize(
    "pregreet",
    [
        b"EHLO client.example.org\r\nMAIL FROM:<sender@example.org>\r\n"
        b"RCPT TO:<alice@example.test>\r\n",
        b"HELO client.example.org\r\nMAIL FROM:<sender@example.org>\r\n"
        b"RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nbot\r\n.\r\n",
    ],
)
def test_case_014_commands_before_greeting_not_run(
    server: CaseServer, pregreet: bytes
) -> None:
    server.clear_mail("alice")
    smtp = SmtpRaw(server.port("smtp"), greet=False)
    smtp.send(pregreet)
    replies = []
    while True:
        try:
            reply = smtp.reply()
        except (ConnectionError, OSError):
            break
        replies.append(reply)
        if smtp.nothing_within(1.0):
            break
    codes = [int(r[-1][:3]) for r in replies]
    # the first answer may still be the 220 (postfix waits, then refuses)
    assert 250 not in codes[2:], replies
    assert codes.count(250) <= 1, replies  # at most the EHLO/HELO reply
    assert 354 not in codes
    server.wait_queue_empty()
    assert server.messages("alice") == []


def test_case_014_replies_stay_in_order_when_pipelined(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    smtp.send(
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\nRSET\r\nRCPT TO:<alice@example.test>\r\n"
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\n"
    )
    codes = [smtp.code() for _ in range(8)]
    assert codes == [250, 550, 250, 250, 503, 250, 250, 354]
    smtp.send(b"Subject: pipelined\r\n\r\nx\r\n.\r\nNOOP\r\n")
    assert [smtp.code(), smtp.code()] == [250, 250]


def test_case_014_noop_mid_group_is_a_sync_error(server: CaseServer) -> None:
    """RFC 2920 3.1: NOOP may only end a group; postfix refuses with 554."""
    smtp = server.smtp()
    smtp.ehlo()
    smtp.send(b"NOOP\r\nMAIL FROM:<sender@example.org>\r\n")
    first = smtp.code()
    assert first in (250, 554)
    if first == 250:
        assert smtp.code() == 250
