"""Case 028: POP3 multi-line responses and byte-stuffing.

RFC 1939 3: every line of a multi-line response that starts with "." is
stuffed with another "."; the response ends with exactly CRLF.CRLF — at
the first line, after bare LFs (or after converting them), across the
server's internal chunk boundaries, in RETR and TOP alike. A message
without a final CRLF gets exactly one before the terminator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server, unstuff


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


MESSAGES = [
    b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nend\r\n",
    b".first line is a dot line\r\n\r\nbody\r\n",
    b"Subject: lf\r\n\r\nline\n.\nafter bare-LF dot\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
    b"Subject: big\r\n\r\n" + (b"x" * 8191 + b"\r\n.") * 200 + b"\r\n",
    b"Subject: chunk\r\n\r\n" + (b"z" * 65533 + b"\r\n.\r\n") * 3,
    b"Subject: end dot\r\n\r\nx\r\n.",
]


@pytest.fixture(scope="module")
def loaded(server: CaseServer) -> CaseServer:
    imap = server.imap()
    imap.login("dave", "dave-pass")
    for message in MESSAGES:
        imap.send(
            f"ap APPEND INBOX {{{len(message)}+}}\r\n".encode() + message + b"\r\n"
        )
        assert imap.read_response(b"ap")[-1].startswith(b"ap OK")
    imap.command("lo", "LOGOUT")
    return server


def canonical(message: bytes) -> bytes:
    crlf = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return crlf if crlf.endswith(b"\r\n") else crlf + b"\r\n"


def strict_lines(raw: bytes) -> list[bytes]:
    """An LF-splitting reader: stops at the first line that is just "."."""
    lines = []
    for line in raw.split(b"\n"):
        if line.rstrip(b"\r") == b".":
            break
        lines.append(line)
    return lines


@pytest.mark.parametrize("number", range(1, len(MESSAGES) + 1))
def test_case_028_retr_and_top_stuffed(loaded: CaseServer, number: int) -> None:
    pop = loaded.pop3()
    assert pop.login("dave", "dave-pass").startswith(b"+OK")
    try:
        message = canonical(MESSAGES[number - 1])
        status, raw = pop.multi(f"RETR {number}")
        assert status.startswith(b"+OK")
        assert unstuff(raw) == message
        # no spurious empty line before the terminator
        assert not raw.endswith(b"\r\n\r\n.\r\n") or message.endswith(b"\r\n\r\n")
        # an LF-splitting client does not stop early
        assert len(strict_lines(raw)) == message.count(b"\n")

        status, top = pop.multi(f"TOP {number} 1")
        assert status.startswith(b"+OK")
        head, _, body = message.partition(b"\r\n\r\n")
        got = unstuff(top)
        assert got.startswith(head + b"\r\n\r\n") or got.startswith(head + b"\r\n")
        first_body_line = body.split(b"\r\n", 1)[0]
        if body:
            assert first_body_line in got
        status, top0 = pop.multi(f"TOP {number} 0")
        assert unstuff(top0).rstrip(b"\r\n") == head.rstrip(b"\r\n") or unstuff(
            top0
        ).startswith(head)
    finally:
        pop.cmd("QUIT")


def test_case_028_list_uidl_capa_terminated(loaded: CaseServer) -> None:
    pop = loaded.pop3()
    for command in ("CAPA",):
        status, raw = pop.multi(command)
        assert status.startswith(b"+OK")
        assert raw.endswith(b".\r\n")
    assert pop.login("dave", "dave-pass").startswith(b"+OK")
    for command in ("LIST", "UIDL"):
        status, raw = pop.multi(command)
        assert status.startswith(b"+OK")
        assert len(unstuff(raw).splitlines()) == len(MESSAGES)
    pop.cmd("QUIT")
