"""Case 023: another session's EXPUNGE must not renumber this one mid-way.

RFC 3501 7.4.1: EXPUNGE responses are not sent when no command is in
progress, nor while answering FETCH, STORE or SEARCH; 5.5: sequence
numbers must not move under the client. RFC 2180 4.1: a FETCH of a
message another session expunged returns the old data or NO
(EXPUNGEISSUED, RFC 5530) — never another message's data. RFC 2177: an
idling session hears of others' changes (EXISTS, EXPUNGE).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, ImapRaw, running_server

_box = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def untagged_expunge(lines: list[bytes]) -> bool:
    return any(
        line.startswith(b"* ") and line.endswith(b" EXPUNGE\r\n") for line in lines
    )


def two_sessions(server: CaseServer) -> tuple[ImapRaw, ImapRaw, str]:
    name = f"Box{next(_box)}"
    a, b = server.imap(), server.imap()
    a.login("anna", "anna-pass")
    b.login("anna", "anna-pass")
    assert a.command("c", f"CREATE {name}")[-1].startswith(b"c OK")
    for word in (b"one", b"two", b"three"):
        msg = b"Subject: " + word + b"\r\n\r\n" + word + b"\r\n"
        a.send(b"ap APPEND " + name.encode() + b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
        assert a.read_response(b"ap")[-1].startswith(b"ap OK")
    return a, b, name


def test_case_023_transcript(server: CaseServer) -> None:
    a, b, box = two_sessions(server)
    assert b"* 3 EXISTS" in b"".join(a.command("a1", f"SELECT {box}"))
    assert b"* 3 EXISTS" in b"".join(b.command("b1", f"SELECT {box}"))
    assert b.command("b2", "STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"b2 OK")
    b3 = b.command("b3", "EXPUNGE")
    assert b"* 1 EXPUNGE\r\n" in b3

    a2 = a.command("a2", "FETCH 2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    blob = b"".join(a2)
    assert b"* 2 FETCH" in blob
    assert b"UID 2" in blob
    assert b"Subject: two" in blob
    assert not untagged_expunge(a2)  # not while answering FETCH

    a3 = a.command("a3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    blob = b"".join(a3)
    assert b"Subject: two" not in blob
    assert b"Subject: three" not in blob
    assert (b"Subject: one" in blob and a3[-1].startswith(b"a3 OK")) or a3[
        -1
    ].startswith(b"a3 NO"), a3
    assert not untagged_expunge(a3)

    a4 = a.command("a4", "STORE 3 +FLAGS (\\Flagged)")
    assert a4[0].startswith(b"* 3 FETCH (FLAGS ("), a4
    assert b"\\Flagged" in a4[0], a4
    assert not untagged_expunge(a4)

    a5 = a.command("a5", "NOOP")
    assert b"* 1 EXPUNGE\r\n" in a5
    a6 = a.command("a6", "FETCH 1:* (UID FLAGS)")
    assert a6[0].startswith(b"* 1 FETCH (UID 2 FLAGS ("), a6
    assert b"\\Flagged" not in a6[0]
    assert a6[1].startswith(b"* 2 FETCH (UID 3 FLAGS ("), a6
    assert b"\\Flagged" in a6[1], a6

    a.send(b"a7 IDLE\r\n")
    assert a.read_line().startswith(b"+")
    msg = b"Subject: four\r\n\r\nfour\r\n"
    b.send(b"b4 APPEND " + box.encode() + b" {%d+}\r\n" % len(msg) + msg + b"\r\n")
    assert b.read_response(b"b4")[-1].startswith(b"b4 OK")
    line = a.read_line()
    while line.endswith(b" RECENT\r\n"):
        line = a.read_line()
    assert line == b"* 3 EXISTS\r\n"
    b.command("b5", "NOOP")
    assert b.command("b6", "UID STORE 4 +FLAGS.SILENT (\\Deleted)")[-1].startswith(
        b"b6 OK"
    )
    assert b.command("b7", "UID EXPUNGE 4")[-1].startswith(b"b7 OK")
    line = a.read_line()
    # flag news for UID 4 and RECENT may come first
    while line.startswith(b"* 3 FETCH") or line.endswith(b" RECENT\r\n"):
        line = a.read_line()
    assert line == b"* 3 EXPUNGE\r\n"
    a.send(b"DONE\r\n")
    assert a.read_response(b"a7")[-1].startswith(b"a7 OK")


def test_case_023_search_and_store_see_no_shift(server: CaseServer) -> None:
    a, b, box = two_sessions(server)
    a.command("a1", f"SELECT {box}")
    b.command("b1", f"SELECT {box}")
    b.command("b2", "STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    b.command("b3", "EXPUNGE")
    search = a.command("a2", "SEARCH ALL")
    assert not untagged_expunge(search)
    # RFC 2180 4.3: expunged messages may be left out, but the numbers
    # are still this session's: UID 3 is message 3 here
    assert search[0] in (b"* SEARCH 1 2 3\r\n", b"* SEARCH 3\r\n"), search
    # STORE on a message another session expunged: NO or a no-op, never UID 3
    a.command("a3", "STORE 1:2 +FLAGS (\\Answered)")
    a5 = a.command("a5", "NOOP")
    assert b"* 2 EXPUNGE\r\n" in a5 or b"* 1 EXPUNGE\r\n" in a5
    final = b"".join(a.command("a6", "UID FETCH 1:* (FLAGS)"))
    assert b"UID 3" in final
    assert b"\\Answered" not in final
    uid3 = b"".join(b.command("b4", "UID FETCH 3 (FLAGS)"))
    assert b"\\Answered" not in uid3


def test_case_023_uid_fetch_may_report_expunges(server: CaseServer) -> None:
    a, b, box = two_sessions(server)
    a.command("a1", f"SELECT {box}")
    b.command("b1", f"SELECT {box}")
    b.command("b2", "UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.command("b3", "EXPUNGE")
    # RFC 3501 7.4.1: UID commands may carry the EXPUNGE; afterwards the
    # numbering must agree with what was announced
    reply = a.command("a2", "UID FETCH 1:* (UID)")
    if b"* 2 EXPUNGE\r\n" in reply:
        assert b"* 2 FETCH (UID 3)\r\n" in reply
    else:
        assert b"* 3 FETCH (UID 3)\r\n" in reply
