"""Case 016: IMAP literal octet counts.

RFC 3501 9 / RFC 9051 9: `literal = "{" number "}" CRLF *CHAR8`,
`number = 1*DIGIT`, an unsigned 32-bit value. Signs, spaces, `_`,
non-ASCII digits, empty counts and values over 4294967295 are syntax
errors: tagged BAD and the session goes on (RFC 3501 7.1.3). A server may
refuse a big literal (RFC 9051 7.1 TOOBIG) but never allocates from the
announced count; a refused non-synchronizing literal (RFC 7888) is still
consumed or the connection closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cases_support import CaseServer, ImapRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def rss_kib(server: CaseServer) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(
        next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]
    )


BAD_COUNTS = [
    "-1",
    "",
    " 5",
    "+5",
    "5 ",
    "1_0",
    "\uff15",
    "0x5",
    "9999999999",
    "4294967296",
    "5a",
]


@pytest.mark.parametrize("count", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("logged_in", [False, True])
def test_case_016_bad_literal_counts_get_bad(
    server: CaseServer, count: str, logged_in: bool
) -> None:
    imap = server.imap()
    if logged_in:
        imap.login("alice", "alice-pass")
        assert imap.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
        command = f"SEARCH {{{count}}}"
    else:
        command = f"LOGIN {{{count}}}"
    reply = imap.command("a2", command.encode())
    assert reply[-1].startswith(b"a2 BAD"), reply
    assert imap.nothing_within(0.3), imap.buf
    assert imap.command("a7", "NOOP")[-1].startswith(b"a7 OK")


def test_case_016_huge_preauth_literal_allocates_nothing(server: CaseServer) -> None:
    before = rss_kib(server)
    imap = server.imap()
    imap.send(b"a1 LOGIN {400000000}\r\n")
    first = imap.read_line()
    assert first.startswith((b"+", b"a1 NO", b"a1 BAD")), first
    if first.startswith(b"+"):
        imap.send(b"0123456789")  # then stall
        assert imap.nothing_within(0.5)
    assert rss_kib(server) - before < 16 * 1024
    # other clients are unaffected
    other = server.imap()
    assert other.command("n", "NOOP")[-1].startswith(b"n OK")


@pytest.mark.parametrize("count", [9000, 20000, 300000])
def test_case_016_refused_nonsync_literal_is_consumed(
    server: CaseServer, count: int
) -> None:
    imap = server.imap()
    imap.send(f"a1 LOGIN {{{count}+}}\r\n".encode() + b"x" * count + b" pass\r\n")
    reply = imap.read_line()
    if reply.startswith(b"* BYE"):
        assert imap.is_closed()
        return
    assert reply.startswith((b"a1 NO", b"a1 BAD")), reply
    # the literal's octets were not read as commands
    assert imap.nothing_within(0.3), imap.buf
    assert imap.command("a2", "NOOP")[-1].startswith(b"a2 OK")


def test_case_016_max_nonsync_literal_allocates_nothing(server: CaseServer) -> None:
    before = rss_kib(server)
    imap = server.imap()
    imap.send(b"a1 LOGIN {4294967295+}\r\n" + b"x" * 1_000_000)
    # consumed silently, refused, or closed; never buffered
    imap.nothing_within(0.5)
    assert rss_kib(server) - before < 16 * 1024
    assert server.imap().command("n", "NOOP")[-1].startswith(b"n OK")


def test_case_016_literal_plus_within_limit_works(server: CaseServer) -> None:
    imap = server.imap()
    imap.send(b"a1 LOGIN {5+}\r\nalice {10+}\r\nalice-pass\r\n")
    assert imap.read_response(b"a1")[-1].startswith(b"a1 OK")
    imap.send(b"a2 SELECT {5}\r\n")
    assert imap.read_line().startswith(b"+")
    imap.send(b"INBOX\r\n")
    assert imap.read_response(b"a2")[-1].startswith(b"a2 OK")


def test_case_016_many_bad_literals_then_alive(server: CaseServer) -> None:
    imap: ImapRaw = server.imap()
    for n in range(50):
        imap.send(f"b{n} NOOP {{-{n}}}\r\n".encode())
    replies = [imap.read_line() for _ in range(50)]
    imap.send(b"z NOOP\r\n")
    last = imap.read_line()
    # RFC 3501 7.1.5: a server that gives up (too many errors) says BYE
    # before it closes; otherwise every line is BAD and NOOP still works
    tagged = [r for r in replies if not r.startswith(b"* BYE")]
    assert all(b" BAD " in r for r in tagged), replies
    if last.startswith(b"z OK"):
        return
    assert any(r.startswith(b"* BYE") for r in [*replies, last]), (replies[-3:], last)
