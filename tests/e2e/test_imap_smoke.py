"""imaplib against a running IMAP service on loopback: the basic path."""

from __future__ import annotations

import imaplib

from tests.services.imapd_fixtures import ImapServer, imap_server

__all__ = ["imap_server"]

MESSAGE = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody line\r\n"


def test_login_append_select_fetch(imap_server: ImapServer) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    client.login("alice", "alice-pass")
    typ, data = client.append("INBOX", "(\\Flagged)", None, MESSAGE)
    assert typ == "OK"
    typ, data = client.select("INBOX")
    assert data == [b"1"]
    typ, data = client.fetch("1", "(FLAGS BODY.PEEK[] RFC822.SIZE)")
    assert data[0][1] == MESSAGE
    assert b"\\Flagged" in data[0][0]
    client.logout()
