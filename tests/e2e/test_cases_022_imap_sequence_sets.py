"""Case 022: UID and sequence-set edges.

RFC 3501 6.4.8: a non-existent UID is ignored without error; `n:*`
always includes the last message even when n is above every UID.
RFC 3501 9: a range covers both ends regardless of order; `*` is the
highest number in use; a message sequence number above EXISTS (and `*`
in an empty mailbox) is BAD; nz-number is 1..4294967295.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, ImapRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def uids(lines: list[bytes]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.search(rb"UID (\d+)", line))]


@pytest.fixture
def imap(server: CaseServer) -> ImapRaw:
    """dave's INBOX holds exactly UIDs 3, 5, 9 (of 9 appended)."""
    client = server.imap()
    client.login("dave", "dave-pass")
    client.command("x0", "DELETE Fresh")
    assert client.command("x1", "CREATE Fresh")[-1].startswith(b"x1 OK")
    for n in range(1, 10):
        msg = b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n)
        client.send(b"x2 APPEND Fresh {%d+}\r\n" % len(msg) + msg + b"\r\n")
        assert client.read_response(b"x2")[-1].startswith(b"x2 OK")
    assert client.command("x3", "SELECT Fresh")[-1].startswith(b"x3 OK")
    assert uids(client.command("x4", "FETCH 1:* (UID)")) == list(range(1, 10))
    client.command("x5", "STORE 1:2,4,6:8 +FLAGS.SILENT (\\Deleted)")
    assert client.command("x6", "EXPUNGE")[-1].startswith(b"x6 OK")
    assert uids(client.command("x7", "FETCH 1:* (UID)")) == [3, 5, 9]
    client.command("x8", "DELETE Empty")
    client.command("x9", "CREATE Empty")
    return client


def test_case_022_transcript(imap: ImapRaw) -> None:
    r = imap.command("a1", "UID FETCH 1 (UID)")
    assert r == [b"a1 OK UID FETCH completed\r\n"] or (
        len(r) == 1 and r[0].startswith(b"a1 OK")
    )
    r = imap.command("a2", "UID STORE 1:2 +FLAGS (\\Deleted)")
    assert len(r) == 1, r
    assert r[0].startswith(b"a2 OK"), r
    r = imap.command("a3", "UID EXPUNGE 1:2")
    assert len(r) == 1, r
    assert r[0].startswith(b"a3 OK"), r
    r = imap.command("a4", "UID FETCH 10:* (UID)")
    assert r[:-1] == [b"* 3 FETCH (UID 9)\r\n"]
    assert r[-1].startswith(b"a4 OK")
    r = imap.command("a5", "UID FETCH *:4 (UID)")
    assert r[:-1] == [b"* 2 FETCH (UID 5)\r\n", b"* 3 FETCH (UID 9)\r\n"], r
    r = imap.command("a6", "FETCH *:2 (UID)")
    assert r[:-1] == [b"* 2 FETCH (UID 5)\r\n", b"* 3 FETCH (UID 9)\r\n"], r
    r = imap.command("a7", "UID FETCH 4294967295 (UID)")
    assert len(r) == 1, r
    assert r[0].startswith(b"a7 OK"), r
    assert imap.command("a8", "UID FETCH 4294967296 (UID)")[-1].startswith(b"a8 BAD")
    assert imap.command("a9", "UID FETCH 0 (UID)")[-1].startswith(b"a9 BAD")
    assert imap.command("a10", "FETCH 4 (UID)")[-1].startswith(b"a10 BAD")
    r = imap.command("a11", "UID SEARCH UID 6:8")
    assert r[0] == b"* SEARCH\r\n", r
    assert r[-1].startswith(b"a11 OK"), r
    after = imap.command("a15", "FETCH 1:* (UID FLAGS)")
    assert uids(after) == [3, 5, 9]
    assert b"\\Deleted" not in b"".join(after)
    assert imap.command("a12", "SELECT Empty")[-1].startswith(b"a12 OK")
    assert imap.command("a13", "FETCH * (UID)")[-1].startswith(b"a13 BAD")
    r = imap.command("a14", "UID FETCH 1:* (UID)")
    assert len(r) == 1, r
    assert r[0].startswith(b"a14 OK"), r


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("UID FETCH 2:4 (UID)", [3]),
        ("UID FETCH 4:2 (UID)", [3]),
        ("UID FETCH 9:9 (UID)", [9]),
        ("UID FETCH 1,2,4,6,7,8 (UID)", []),
        ("UID FETCH 4,3,3,9 (UID)", [3, 9]),
        ("UID FETCH *:* (UID)", [9]),
        ("UID FETCH 9:4294967295 (UID)", [9]),
        ("UID FETCH 100:200 (UID)", []),
        ("FETCH 3:1 (UID)", [3, 5, 9]),
        ("FETCH *:* (UID)", [9]),
        ("FETCH 2,2,1 (UID)", [3, 5]),
        ("UID SEARCH UID 1:*", [3, 5, 9]),
        ("UID SEARCH UID 10:*", [9]),
        ("SEARCH UID 4:8", [2]),
    ],
)
def test_case_022_sets(imap: ImapRaw, command: str, expected: list[int]) -> None:
    reply = imap.command("b", command)
    assert reply[-1].startswith(b"b OK"), reply
    if "SEARCH" in command:
        numbers = [int(x) for x in reply[0].split()[2:]]
        assert numbers == expected, reply
    else:
        assert sorted(uids(reply)) == expected, reply


@pytest.mark.parametrize(
    "command",
    [
        "FETCH 0 (UID)",
        "FETCH 4:5 (UID)",
        "FETCH 1:4 (UID)",
        "FETCH -1 (UID)",
        "FETCH 1:2:3 (UID)",
        "FETCH 1, (UID)",
        "UID FETCH 99999999999999999999 (UID)",
        "UID FETCH 1:4294967296 (UID)",
        "UID STORE 0 +FLAGS (\\Deleted)",
        "STORE 4 +FLAGS (\\Deleted)",
        "COPY 4 INBOX",
    ],
)
def test_case_022_bad_sets(imap: ImapRaw, command: str) -> None:
    assert imap.command("c", command)[-1].startswith(b"c BAD")
    after = imap.command("d", "FETCH 1:* (UID FLAGS)")
    assert uids(after) == [3, 5, 9]
    assert b"\\Deleted" not in b"".join(after)


def test_case_022_absent_uids_never_hit_present_ones(imap: ImapRaw) -> None:
    for command in (
        "UID STORE 1 +FLAGS (\\Deleted)",
        "UID STORE 4 +FLAGS (\\Deleted)",
        "UID STORE 10:20 +FLAGS (\\Seen)",
        "UID COPY 1:2 INBOX",
        "UID MOVE 6:8 INBOX",
        "UID EXPUNGE 1",
    ):
        assert imap.command("e", command)[-1].startswith(b"e OK"), command
    after = imap.command("f", "FETCH 1:* (UID FLAGS)")
    assert uids(after) == [3, 5, 9]
    # UID 10:20 includes no message: RFC 3501 6.4.8 (only n:* reaches the last)
    assert b"\\Seen" not in b"".join(after)
    assert b"\\Deleted" not in b"".join(after)
