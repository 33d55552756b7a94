"""Case 006: 8-bit data and the BODY= parameter.

RFC 5321 2.4: keywords and argument values are case-insensitive, so
`BODY=7bit` and `body=8bitmime` are legal (RFC 6152 2). RFC 6152 3: an
8BITMIME server preserves every bit; RFC 5321 4.5.2: no irreversible
transformation. Without BODY=, 8-bit data is kept unchanged (postfix).
A value not advertised (`BINARYMIME`) gets 555 or 501 (RFC 5321
4.1.1.11), and only one BODY per MAIL (RFC 6152 3).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


DATA = (
    b"Subject: caf\xe9\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\nd\xe9j\xe0 vu \xff\r\n"
    b"\xc3\x28 invalid utf-8 \x80\x81\r\n"
)


@pytest.mark.parametrize(
    "params",
    ["BODY=7bit", "body=8bitmime", "BODY=8BITMIME", "Body=7Bit", ""],
)
def test_case_006_body_parameter_any_case_and_octets_kept(
    server: CaseServer, params: str
) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"mail from:<sender@example.org> {params}".strip()) == 250
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
    assert smtp.cmd("DATA") == 354
    smtp.send(DATA + b".\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("alice", 1)
    stored = path.read_bytes()
    # byte-identical after our trace headers (stored with LF line ends)
    assert stored.endswith(DATA.replace(b"\r\n", b"\n")), stored[-200:]

    # and served back byte for byte over IMAP
    imap = server.imap()
    imap.login("alice", "alice-pass")
    imap.command("s", "SELECT INBOX")
    reply = b"".join(imap.command("f", "FETCH 1 (BODY.PEEK[TEXT])"))
    assert b"d\xe9j\xe0 vu \xff\r\n\xc3\x28 invalid utf-8 \x80\x81\r\n" in reply


@pytest.mark.parametrize(
    "params",
    ["BODY=BINARYMIME", "BODY=9BIT", "BODY=", "BODY", "BODY=7BIT BODY=8BITMIME"],
)
def test_case_006_bad_body_values_refused(server: CaseServer, params: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"MAIL FROM:<sender@example.org> {params}") in (501, 555)
    assert smtp.cmd("MAIL FROM:<sender@example.org> BODY=7BIT") == 250


def test_case_006_keywords_case_insensitive(server: CaseServer) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("mail from:<sender@example.org> size=100 body=8bitmime") == 250
    assert smtp.cmd("rcpt to:<alice@example.test> notify=never") == 250
    assert smtp.cmd("rset") == 250
    assert smtp.cmd("Mail From:<sender@example.org> Ret=Hdrs Envid=x") == 250
