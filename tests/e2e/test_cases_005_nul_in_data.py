"""Case 005: NUL octets in DATA and in command lines.

RFC 5322 2.3 excludes NUL from message text and RFC 5321 2.4 lets a
server refuse it; either way the decision comes before the 250 (RFC 5321
4.1.1.4). If accepted, every octet is stored, and IMAP must not send the
NUL raw inside a literal (RFC 3501 4.3.1: a string with NUL is binary).
In commands NUL is not a legal character (RFC 5321 4.1.2): 501/500 and
the session goes on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server, unstuff


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


BODIES = {
    "mid-line": b"before\x00after\r\nsecond line\r\n",
    "line-start": b"\x00leading nul\r\nsecond line\r\n",
    "many": b"a\x00\x00\x00b\r\n\x00\r\nsecond line\r\n",
}


@pytest.mark.parametrize(
    ("user", "name"), [("carol", "mid-line"), ("dave", "line-start"), ("bob", "many")]
)
def test_case_005_nul_in_data_decided_before_250(
    server: CaseServer, user: str, name: str
) -> None:
    body = BODIES[name]
    smtp = server.smtp()
    smtp.ehlo()
    message = b"From: sender@example.org\r\nSubject: nul\r\n\r\n" + body
    code = smtp.transaction(
        "sender@example.org", [f"{user}@example.test"], message + b".\r\n"
    )
    assert code in (250, 550, 554)
    assert smtp.cmd("NOOP") == 250
    if code != 250:
        server.wait_queue_empty()
        assert server.messages(user) == []
        return

    # accepted: every octet stored (on disk with LF line ends)
    (path,) = server.wait_messages(user, 1)
    assert path.read_bytes().endswith(body.replace(b"\r\n", b"\n"))

    # IMAP: never a raw NUL in a response (RFC 3501 4.3.1)
    imap = server.imap()
    imap.login(user, f"{user}-pass")
    assert imap.command("s", "SELECT INBOX")[-1].startswith(b"s OK")
    for item in ("BODY.PEEK[]", "BODY.PEEK[TEXT]", "RFC822", "BODY.PEEK[1]"):
        reply = imap.command("f", f"FETCH 1 ({item})")
        assert reply[-1].startswith((b"f OK", b"f NO")), reply
        assert b"\x00" not in b"".join(reply), (item, reply)
    assert imap.command("n", "NOOP")[-1].startswith(b"n OK")

    # POP3: all lines there (POP3 has no NUL rule; the octets are the message)
    pop = server.pop3()
    assert pop.login(user, f"{user}-pass").startswith(b"+OK")
    status, raw = pop.multi("RETR 1")
    assert status.startswith(b"+OK")
    assert b"second line" in unstuff(raw)
    assert pop.cmd("QUIT").startswith(b"+OK")


COMMANDS = [
    b"MAIL FROM:<al\x00ice@example.org>",
    b"MAIL FROM:<alice@example.org>\x00",
    b"EHLO cli\x00ent.example.org",
    b"\x00",
]


@pytest.mark.parametrize("line", COMMANDS, ids=repr)
def test_case_005_nul_in_command_is_refused(server: CaseServer, line: bytes) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(line) in (500, 501)
    assert smtp.cmd("NOOP") == 250
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250


def test_case_005_nul_in_rcpt_after_mail(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd(b"RCPT TO:<ali\x00ce@example.test>") in (500, 501)
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
