"""CHUNKING (RFC 3030) on a running smtpd, with raw sockets."""

from __future__ import annotations

import logging

import pytest

from .smtpd_fixtures import Server, open_raw, server

__all__ = ["server"]

EHLO = b"EHLO client.example.org"


def test_chunking_is_offered_and_a_chunked_message_is_queued(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.smtpd")
    raw = open_raw(server)
    raw.send(EHLO + b"\r\n")
    code, lines = raw.reply()
    assert code == 250
    assert b"250-CHUNKING\r\n" in lines or b"250 CHUNKING\r\n" in lines
    assert not any(b"BINARYMIME" in line for line in lines)

    head = b"Subject: chunked\r\n"
    body = b"\r\n.\r\nRCPT TO:<bob@example.test>\r\nbare\nend"
    # RFC 3030 4.2: the whole transaction pipelined in one write
    raw.send(
        b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        + b"BDAT %d\r\n" % len(head)
        + head
        + b"BDAT %d LAST\r\n" % len(body)
        + body
    )
    assert [raw.reply()[1][-1] for _ in range(4)] == [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"250 2.0.0 Ok: %d octets\r\n" % len(head),
        b"250 2.0.0 Ok: queued as Q0001\r\n",
    ]
    assert raw.command(b"QUIT") == 221
    server.stop()

    ((envelope, data),) = server.spool.messages
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]
    assert data.startswith(b"Received: from client.example.org (localhost ")
    assert data.endswith(
        b"Subject: chunked\r\n\r\n.\r\nRCPT TO:<bob@example.test>\r\nbare\r\nend\r\n"
    )
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("disconnect from localhost[127.0.0.1] ") and " bdat=2 " in line
        for line in lines
    )


def test_refused_bdat_chunk_is_not_read_as_commands(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 250
    # no recipient yet: 503, and the RCPT/DATA inside the chunk are skipped
    inside = b"RCPT TO:<alice@example.test>\r\nDATA\r\n"
    raw.send(b"BDAT %d LAST\r\n" % len(inside) + inside)
    assert raw.code() == 503
    assert raw.command(b"NOOP") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    assert raw.command(b"BDAT 0 LAST") == 250
    assert len(server.spool.messages) == 1


def test_issue_011_size_over_chunks(server: Server) -> None:
    # message_size_limit is 1 MiB in the fixture; 2 chunks of 600 KiB
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    chunk = (b"x" * 1022 + b"\r\n") * 600
    raw.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    assert raw.code() == 250
    raw.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    code, lines = raw.reply()
    assert code == 552
    assert lines[-1].startswith(b"552 5.3.4 ")
    assert raw.command(b"NOOP") == 250
    assert server.spool.messages == []


def test_bdat_without_a_count_ends_the_session(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    raw.send(b"BDAT lots\r\nQUIT\r\n")
    assert raw.reply()[1] == [b"501 5.5.4 Syntax: BDAT count [LAST]\r\n"]
    assert raw.reply() == (0, [])
