"""Case 020: deeply nested MIME and huge part counts.

RFC 2046 5.1 sets no depth limit, so these messages are legal; delivery
accepts each or refuses it with one 5xx before the 250 (RFC 5321
4.1.1.4), and never crashes after accepting. IMAP answers every FETCH
with well-formed data (RFC 3501 7.4.2): beyond Roost's limits the rest is
one opaque leaf, consistently, and repeated FETCHes give identical
output. Tested at, below and above plausible limits (CVE-2020-25275).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, ImapRaw, running_server

HEAD = b"From: sender@example.org\r\nTo: alice@example.test\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server({"message_size_limit": "20480000"})


def nest_multipart(depth: int, close: bool = True) -> bytes:
    out = [HEAD + b"Subject: deep multipart\r\nMIME-Version: 1.0\r\n"]
    out.append(b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n')
    for i in range(depth):
        out.append(
            b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
            % (i, i + 1)
        )
    out.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\nleaf\r\n" % depth)
    if close:
        for i in range(depth, -1, -1):
            out.append(b"--b%d--\r\n" % i)
    else:
        out.append(b"--b4")  # ends in the middle of a boundary line
    return b"".join(out)


def nest_rfc822(depth: int) -> bytes:
    message = HEAD + b"Subject: leaf\r\n\r\nleaf\r\n"
    for i in range(depth):
        message = (
            b"Subject: level %d\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: message/rfc822\r\n\r\n" % i
        ) + message
    return message


def many_parts(count: int, digest: bool = False) -> bytes:
    kind = b"digest" if digest else b"mixed"
    out = [HEAD + b"Subject: many\r\nMIME-Version: 1.0\r\n"]
    out.append(b"Content-Type: multipart/" + kind + b"; boundary=p\r\n\r\n")
    for i in range(1, count + 1):
        if digest or i in (9999, 10000, 10001):
            out.append(
                b"--p\r\nContent-Type: message/rfc822\r\n\r\n"
                b"Subject: m%d\r\n\r\nleaf\r\n" % i
            )
        else:
            out.append(b"--p\r\nContent-Type: text/plain\r\n\r\nt%d\r\n" % i)
    out.append(b"--p--\r\n")
    return b"".join(out)


def append(imap: ImapRaw, message: bytes) -> list[bytes]:
    imap.send(b"ap APPEND INBOX {%d}\r\n" % len(message))
    first = imap.read_line()
    if not first.startswith(b"+"):
        return [first]
    imap.send(message + b"\r\n")
    return imap.read_response(b"ap")


MESSAGES = {
    "multipart-5000": lambda: nest_multipart(5000),
    "multipart-99": lambda: nest_multipart(99),
    "multipart-100": lambda: nest_multipart(100),
    "multipart-101": lambda: nest_multipart(101),
    "rfc822-5000": lambda: nest_rfc822(5000),
    "rfc822-101": lambda: nest_rfc822(101),
    "parts-20000": lambda: many_parts(20000),
    "digest-20000": lambda: many_parts(20000, digest=True),
    "truncated-50": lambda: nest_multipart(50, close=False),
}


def check_mailbox(imap: ImapRaw, count: int) -> None:
    assert imap.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
    first = imap.command("a1", "FETCH 1:* (BODYSTRUCTURE)")
    assert first[-1].startswith(b"a1 OK"), first[-1]
    assert sum(1 for line in first if b" FETCH (BODYSTRUCTURE (" in line) == count
    for line in first[:-1]:
        # balanced parentheses outside strings: well-formed data
        text = line.split(b"BODYSTRUCTURE", 1)[-1]
        depth = 0
        quoted = False
        escaped = False
        for byte in text:
            ch = chr(byte)
            if quoted:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    quoted = False
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        assert depth == -1  # the FETCH's own opening paren came before
    assert imap.command("a2", "FETCH 1:* (BODY.PEEK[1.1.1.1.1.1])")[-1].startswith(
        b"a2 OK"
    )
    assert imap.command("a3", "SEARCH BODY leaf")[-1].startswith(b"a3 OK")
    assert imap.command("a4", "NOOP")[-1].startswith(b"a4 OK")
    again = imap.command("a1", "FETCH 1:* (BODYSTRUCTURE)")
    assert again == first


@pytest.mark.parametrize("name", list(MESSAGES))
def test_case_020_append_and_fetch(server: CaseServer, name: str) -> None:
    message = MESSAGES[name]()
    imap = server.imap()
    imap.login("bob", "bob-pass")
    imap.command("c", "SELECT INBOX")
    imap.command("d", "STORE 1:* +FLAGS.SILENT (\\Deleted)")
    imap.command("e", "EXPUNGE")
    reply = append(imap, message)
    assert reply[-1].startswith((b"ap OK", b"ap NO")), reply[-1]
    if reply[-1].startswith(b"ap NO"):
        return
    check_mailbox(imap, 1)
    whole = imap.command("w", "FETCH 1 (BODY.PEEK[])")
    assert message in b"".join(whole)


@pytest.mark.parametrize(
    "name", ["multipart-5000", "rfc822-5000", "parts-20000", "truncated-50"]
)
def test_case_020_smtp_delivery(server: CaseServer, name: str) -> None:
    server.clear_mail("carol")
    message = MESSAGES[name]()
    smtp = server.smtp()
    smtp.ehlo()
    code = smtp.transaction(
        "sender@example.org", ["carol@example.test"], message + b"\r\n.\r\n"
    )
    assert code in (250, 552, 554)
    assert smtp.cmd("NOOP") == 250
    if code != 250:
        server.wait_queue_empty()
        assert server.messages("carol") == []
        return
    server.wait_messages("carol", 1)
    imap = server.imap()
    imap.login("carol", "carol-pass")
    check_mailbox(imap, 1)
