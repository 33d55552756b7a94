"""Case 029: POP3 maildrop state across DELE/RSET/QUIT, drops, restarts.

RFC 1939 5/6: DELE only marks, RSET unmarks, removal happens in UPDATE
after QUIT; a session ending any other way removes nothing. RFC 1939 4:
exclusive access, or (as Dovecot) per-session snapshots whose operations
fail cleanly on messages the other removed (RFC 2449 8.1.2 [IN-USE]).
RFC 1939 7: a unique-id is never reused in a maildrop, across restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, Pop3Raw, poll, running_server, unstuff


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def deliver(server: CaseServer, subject: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    data = f"Subject: {subject}\r\n\r\n{subject}\r\n.\r\n".encode()
    assert smtp.transaction("sender@example.org", ["anna@example.test"], data) == 250
    smtp.cmd("QUIT")


def uidl(pop: Pop3Raw) -> list[bytes]:
    status, raw = pop.multi("UIDL")
    assert status.startswith(b"+OK")
    return [line.split()[1] for line in unstuff(raw).splitlines() if line]


def login(server: CaseServer) -> Pop3Raw:
    pop = server.pop3()
    reply = pop.login("anna", "anna-pass")
    assert reply.startswith(b"+OK"), reply
    return pop


def test_case_029_transcript_and_restart(server: CaseServer) -> None:
    for n in range(3):
        deliver(server, f"m{n}")
    server.wait_messages("anna", 3)

    a = login(server)
    ids = uidl(a)
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert a.cmd("DELE 1").startswith(b"+OK")
    assert a.cmd("RETR 1").startswith(b"-ERR")
    assert a.cmd("DELE 1").startswith(b"-ERR")
    assert a.cmd("STAT").startswith(b"+OK 2 ")
    status, raw = a.multi("LIST")
    assert [line.split()[0] for line in unstuff(raw).splitlines()] == [b"2", b"3"]
    assert a.cmd("RSET").startswith(b"+OK")
    assert a.cmd("STAT").startswith(b"+OK 3 ")
    assert a.cmd("DELE 2").startswith(b"+OK")
    deliver(server, "m3")
    server.wait_messages("anna", 4)
    assert a.cmd("STAT").startswith(b"+OK 2 ")  # new mail not in this session
    assert a.cmd("LIST 4").startswith(b"-ERR")
    a.close()  # dropped without QUIT: nothing removed

    def unlocked() -> bool:
        b = server.pop3()
        ok = b.login("anna", "anna-pass").startswith(b"+OK")
        b.cmd("QUIT")
        return ok

    poll(unlocked, "the maildrop lock to be released after a drop")
    assert len(server.messages("anna")) == 4
    b = login(server)
    ids_b = uidl(b)
    assert ids_b[:3] == ids
    assert len(ids_b) == 4
    assert b.cmd("DELE 2").startswith(b"+OK")
    assert b.cmd("QUIT").startswith(b"+OK")
    poll(lambda: len(server.messages("anna")) == 3, "UPDATE to remove one file")
    removed = ids[1]

    deliver(server, "m4")
    server.wait_messages("anna", 4)
    assert server.stop() == 0
    server.start()
    c = login(server)
    ids_c = uidl(c)
    assert removed not in ids_c
    assert len(set(ids_c)) == 4
    assert set(ids_b) - {removed} <= set(ids_c)
    c.cmd("QUIT")


def test_case_029_identical_messages_get_distinct_uidl(server: CaseServer) -> None:
    for _ in range(2):
        deliver(server, "same")
    poll(lambda: len(server.messages("anna")) >= 2, "two copies")
    server.wait_queue_empty()
    pop = login(server)
    ids = uidl(pop)
    assert len(set(ids)) == len(ids)
    pop.cmd("QUIT")


def test_case_029_two_sessions(server: CaseServer) -> None:
    server.wait_queue_empty()
    d = login(server)
    e = server.pop3()
    e_reply = e.login("anna", "anna-pass")
    if e_reply.startswith(b"-ERR"):
        assert b"[IN-USE]" in e_reply
        d.cmd("QUIT")
        return
    _, first = d.multi("RETR 1")
    assert d.cmd("DELE 1").startswith(b"+OK")
    assert d.cmd("QUIT").startswith(b"+OK")
    status, raw = e.multi("RETR 1")
    # the other session's copy is gone: -ERR, or the same message, never another
    assert status.startswith(b"-ERR") or unstuff(raw) == unstuff(first)
    assert e.cmd("NOOP").startswith(b"+OK")
    assert e.cmd("QUIT").startswith((b"+OK", b"-ERR"))
