"""Case 015: SASL PLAIN authzid/authcid, bad base64, aborted exchanges.

RFC 4616 2: `message = [authzid] NUL authcid NUL passwd`; authcid and
passwd are non-empty, exactly two NULs; authzid equal to authcid is the
same as none; any other authzid needs an authorization this server does
not grant. RFC 4954 4: undecodable base64 and `*` get 501; 6: a failure
is 535 5.7.8. IMAP: RFC 3501 6.2.2 (tagged NO/BAD); POP3: RFC 5034.
Relay is allowed only when authenticated here (mynetworks excludes us).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, SmtpRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server({"mynetworks": "192.0.2.0/24"})


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


GOOD = [b"\x00alice\x00alice-pass", b"alice\x00alice\x00alice-pass"]
BAD = [
    b"bob\x00\x00alice-pass",  # empty authcid: never bob, never alice
    b"bob\x00alice\x00alice-pass",  # act as bob with alice's password
    b"alice\x00alice-pass",  # one NUL
    b"\x00alice\x00",  # empty password
    b"\x00\x00alice-pass",
    b"\x00alice\x00alice-pass\x00extra",  # three NULs
    b"\x00alice\x00alice-pas",
    b"\x00alice\x00alice-pass\x00",
    b"\x00bob\x00alice-pass",
    b"\x00alic\x00alice-pass",
]


def submission(server: CaseServer) -> SmtpRaw:
    smtp = server.smtp("submission")
    smtp.ehlo()
    assert smtp.cmd("STARTTLS") == 220
    smtp.start_tls()
    assert b"AUTH" in b"".join(smtp.ehlo())
    return smtp


def may_relay(smtp: SmtpRaw) -> bool:
    mail = smtp.cmd("MAIL FROM:<alice@example.test>")
    if mail == 530:  # submission: authentication required first
        return False
    assert mail == 250
    code = smtp.cmd("RCPT TO:<someone@elsewhere.example>")
    assert smtp.cmd("RSET") == 250
    return code == 250


@pytest.mark.parametrize("message", GOOD, ids=repr)
def test_case_015_smtp_good_plain(server: CaseServer, message: bytes) -> None:
    smtp = submission(server)
    assert not may_relay(smtp)
    assert smtp.cmd(f"AUTH PLAIN {b64(message)}") == 235
    assert may_relay(smtp)


@pytest.mark.parametrize("message", BAD, ids=repr)
def test_case_015_smtp_bad_plain(server: CaseServer, message: bytes) -> None:
    smtp = submission(server)
    assert smtp.cmd(f"AUTH PLAIN {b64(message)}") in (535, 501)
    assert smtp.cmd("NOOP") == 250
    assert not may_relay(smtp)


@pytest.mark.parametrize(
    "initial", ["!!!not-base64!!!", "YWxpY2U", "YW=xp", "\u00e9t\u00e9"]
)
def test_case_015_smtp_undecodable_is_501(server: CaseServer, initial: str) -> None:
    smtp = submission(server)
    assert smtp.cmd(f"AUTH PLAIN {initial}".encode()) == 501
    assert smtp.cmd("NOOP") == 250
    assert not may_relay(smtp)


def test_case_015_smtp_empty_initial_response(server: CaseServer) -> None:
    """RFC 4954 4: "=" is a zero-length initial response, not bad base64."""
    smtp = submission(server)
    assert smtp.cmd("AUTH PLAIN =") in (535, 501)
    assert smtp.cmd("NOOP") == 250
    assert not may_relay(smtp)


def test_case_015_smtp_abort_and_disconnect(server: CaseServer) -> None:
    smtp = submission(server)
    assert smtp.cmd("AUTH PLAIN") == 334
    assert smtp.cmd("*") == 501
    assert smtp.cmd("NOOP") == 250
    assert smtp.cmd("AUTH PLAIN") == 334
    assert smtp.cmd("!!!") == 501
    assert smtp.cmd("AUTH LOGIN") == 334
    assert smtp.cmd("*") == 501
    assert smtp.cmd("AUTH PLAIN") == 334
    smtp.close()  # drop mid-exchange
    again = submission(server)
    assert again.cmd(f"AUTH PLAIN {b64(GOOD[0])}") == 235
    assert again.cmd("AUTH PLAIN") == 503  # RFC 4954 4: once per session


def test_case_015_smtp_log_never_names_bob(server: CaseServer) -> None:
    for message in BAD[:2]:
        smtp = submission(server)
        smtp.cmd(f"AUTH PLAIN {b64(message)}")
        smtp.cmd("QUIT")
    assert "sasl_username=bob" not in server.log()


@pytest.mark.parametrize("message", BAD[:4], ids=repr)
def test_case_015_imap_bad_plain(server: CaseServer, message: bytes) -> None:
    imap = server.imap()
    imap.send(f"a1 AUTHENTICATE PLAIN {b64(message)}\r\n".encode())
    reply = imap.read_response(b"a1")
    assert reply[-1].startswith((b"a1 NO", b"a1 BAD")), reply
    assert imap.command("a2", "SELECT INBOX")[-1].startswith((b"a2 BAD", b"a2 NO"))
    assert imap.command("a3", "NOOP")[-1].startswith(b"a3 OK")


def test_case_015_imap_plain_good_abort_garbage(server: CaseServer) -> None:
    imap = server.imap()
    imap.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert imap.read_line().startswith(b"+")
    imap.send(b"*\r\n")
    assert imap.read_response(b"a1")[-1].startswith(b"a1 BAD")
    imap.send(b"a2 AUTHENTICATE PLAIN\r\n")
    assert imap.read_line().startswith(b"+")
    imap.send(b"!!!\r\n")
    assert imap.read_response(b"a2")[-1].startswith((b"a2 BAD", b"a2 NO"))
    for message in GOOD:
        fresh = server.imap()
        reply = fresh.command("g", f"AUTHENTICATE PLAIN {b64(message)}")
        assert reply[-1].startswith(b"g OK"), reply
        assert fresh.command("s", "SELECT INBOX")[-1].startswith(b"s OK")


@pytest.mark.parametrize("message", BAD[:4], ids=repr)
def test_case_015_pop3_bad_plain(server: CaseServer, message: bytes) -> None:
    pop = server.pop3()
    assert pop.cmd(f"AUTH PLAIN {b64(message)}").startswith(b"-ERR")
    assert pop.cmd("STAT").startswith(b"-ERR")  # still not logged in
    assert pop.cmd("AUTH PLAIN !!!").startswith(b"-ERR")
    assert pop.cmd("AUTH PLAIN").startswith(b"+")
    assert pop.cmd("*").startswith(b"-ERR")
    assert pop.cmd(f"AUTH PLAIN {b64(GOOD[1])}").startswith(b"+OK")
    assert pop.cmd("STAT").startswith(b"+OK")
