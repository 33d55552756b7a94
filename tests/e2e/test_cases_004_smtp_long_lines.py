"""Case 004: over-long lines in DATA and on the command line.

RFC 5321 4.5.3.1.6: a 1000-octet text line (with CRLF) MUST be accepted.
RFC 5321 4.2.5 / 4.1.1.4: the reply to DATA comes after <CRLF>.<CRLF>,
never mid-stream, so text after a long line is never run as commands.
RFC 5321 4.5.3.1.4: command lines are limited to 512 octets; a longer one
gets 500 and the session goes on. Memory stays bounded whatever the client
sends (DEVELOPERS.md: limits for every size a client controls).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cases_support import CaseServer, SmtpRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def rss_kib(server: CaseServer) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


def open_data(server: CaseServer) -> SmtpRaw:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
    assert smtp.cmd("DATA") == 354
    return smtp


def test_case_004_thousand_octet_line_accepted_unchanged(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = open_data(server)
    line = b"a" * 998
    smtp.send(b"Subject: ok\r\n\r\n" + line + b"\r\n.\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().endswith(b"\n" + line + b"\n")


@pytest.mark.parametrize("length", [1001, 5000, 70000])
def test_case_004_long_line_gets_one_reply_after_end_of_data(
    server: CaseServer, length: int
) -> None:
    server.clear_mail("alice")
    smtp = open_data(server)
    smtp.send(b"Subject: long\r\n\r\n" + b"b" * length + b"\r\nRSET\r\nQUIT\r\n")
    # nothing may arrive before the end of data (RFC 5321 4.1.1.4)
    assert smtp.nothing_within(1.0), smtp.buf
    smtp.send(b".\r\n")
    code = smtp.code()
    assert code in (250, 500, 552)
    assert smtp.nothing_within(0.5), smtp.buf
    assert smtp.cmd("NOOP") == 250
    if code == 250:
        (path,) = server.wait_messages("alice", 1)
        stored = path.read_bytes()
        # friendlier choice: kept whole; RSET/QUIT stay body text
        assert b"b" * length + b"\nRSET\nQUIT\n" in stored
    else:
        server.wait_queue_empty()
        assert server.messages("alice") == []


def test_case_004_endless_line_is_capped_then_one_reply(server: CaseServer) -> None:
    server.clear_mail("alice")
    before = rss_kib(server)
    smtp = open_data(server)
    smtp.send(b"Subject: huge\r\n\r\n")
    chunk = b"c" * (1024 * 1024)
    for _ in range(48):  # 48 MiB with no line end at all
        smtp.send(chunk)
    grown = rss_kib(server) - before
    assert smtp.nothing_within(0.5), smtp.buf
    smtp.send(b"\r\n.\r\n")
    code = smtp.code()
    assert code in (500, 552, 421)
    # bounded memory: far below the 48 MiB sent
    assert grown < 32 * 1024, f"RSS grew by {grown} KiB"
    if code != 421:
        assert smtp.cmd("NOOP") == 250
    server.wait_queue_empty()
    assert server.messages("alice") == []


def test_case_004_command_line_over_512_octets(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    long_param = "XYZ=" + "x" * 4000
    smtp.send(f"MAIL FROM:<sender@example.org> {long_param}\r\n".encode())
    assert smtp.code() == 500
    assert smtp.nothing_within(0.5), smtp.buf  # one reply, not one per chunk
    assert smtp.cmd("NOOP") == 250
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250


def test_case_004_endless_command_line_is_bounded(server: CaseServer) -> None:
    before = rss_kib(server)
    smtp = server.smtp()
    smtp.ehlo()
    for _ in range(16):
        try:
            smtp.send(b"x" * (1024 * 1024))
        except OSError:
            break  # the server may close on us: fine
    grown = rss_kib(server) - before
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
    try:
        smtp.send(b"\r\nNOOP\r\n")
        first = smtp.reply()
        assert first[0][:3] in (b"500", b"421"), first
    except (OSError, ConnectionError):
        pass
    assert server.smtp().cmd("NOOP") == 250
