"""Case 001: SMTP smuggling with a bare-LF "end of data".

RFC 5321 4.1.1.4 and 2.3.8: only <CRLF>.<CRLF> ends the mail data; a
lone LF is never a line end, so `\\n.\\r\\n`, `\\n.\\n`, `\\r\\n.\\n` (and
`\\r.\\r\\n`, a bare CR) never end DATA. The whole blob draws exactly one
reply and at most one message lands, with the forged text in its body.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, header_block, running_server

SEPARATORS = [b"\n.\r\n", b"\n.\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r\n.\n"]


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def smuggle_blob(separator: bytes) -> bytes:
    return (
        b"From: news@example.org\r\nSubject: first\r\n\r\nhello"
        + separator
        + b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nFrom: ceo@example.org\r\nSubject: smuggled\r\n\r\n"
        b"pay now\r\n.\r\n"
    )


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
@pytest.mark.parametrize("pipelined", [False, True])
def test_case_001_bare_lf_end_of_data_is_one_message(
    server: CaseServer, separator: bytes, pipelined: bool
) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo("relay.example.org")
    if pipelined:
        smtp.send(
            b"MAIL FROM:<news@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        )
        assert [smtp.code(), smtp.code(), smtp.code()] == [250, 250, 354]
    else:
        assert smtp.cmd("MAIL FROM:<news@example.org>") == 250
        assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
        assert smtp.cmd("DATA") == 354
    smtp.send(smuggle_blob(separator))

    # exactly one reply to the whole DATA phase (RFC 5321 4.1.1.4)
    final = smtp.code()
    assert final in (250, 550, 554, 500, 421)
    if final != 421:
        assert smtp.nothing_within(1.0), smtp.buf
        assert smtp.cmd("NOOP") == 250
    smtp.close()

    if final == 250:
        files = server.wait_messages("alice", 1)
    else:
        server.wait_queue_empty()
        files = server.messages("alice")
    assert len(files) <= 1
    for path in files:
        stored = path.read_bytes()
        assert b"Subject: smuggled" not in header_block(stored)
        assert b"From: ceo@example.org" not in header_block(stored)
        # the forged commands stay inside the one message's body
        assert b"MAIL FROM:<ceo@example.org>" in stored
        assert b"\r" not in stored.replace(b"\r\n", b"")  # no stray bare CR


def test_case_001_crlf_dot_crlf_still_ends_data(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    data = b"Subject: normal\r\n\r\nbody\r\n..dot\r\n.\r\n"
    assert smtp.transaction("sender@example.org", ["alice@example.test"], data) == 250
    assert smtp.cmd("QUIT") == 221
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().endswith(b"body\n.dot\n")
