"""Every IMAP4rev1 command and extension through imaplib on loopback."""

from __future__ import annotations

import imaplib
import re
import ssl

import pytest

from tests.services.imapd_fixtures import ImapServer, imap_server

__all__ = ["imap_server"]

MULTIPART = (
    "From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
    "To: Alice <alice@example.test>, bob@example.test\r\n"
    "Subject: =?UTF-8?B?R3LDvMOfZQ==?= und mehr\r\n"
    "Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n"
    "Message-ID: <m1@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="outer"\r\n'
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße aus Köln\r\n"
    "zweite Zeile\r\n"
    "--outer\r\n"
    "Content-Type: application/octet-stream; name=data.bin\r\n"
    "Content-Disposition: attachment; filename=data.bin\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "AAECAwQFBgcICQ==\r\n"
    "--outer--\r\n"
    "epilogue\r\n"
).encode()


def login(server: ImapServer, user: str = "alice") -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.port)
    client.login(user, f"{user}-pass")
    return client


def append(client: imaplib.IMAP4, subject: str, body: str = "text") -> None:
    msg = f"From: a@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    typ, _ = client.append("INBOX", None, None, msg.encode())
    assert typ == "OK"


def test_capability_noop_logout(imap_server: ImapServer) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    caps = client.capabilities
    for cap in (
        "IMAP4REV1",
        "IDLE",
        "UIDPLUS",
        "MOVE",
        "LITERAL+",
        "SPECIAL-USE",
        "CHILDREN",
        "NAMESPACE",
        "ID",
        "UNSELECT",
        "ENABLE",
        "SASL-IR",
        "AUTH=PLAIN",
        "STARTTLS",
    ):
        assert cap in caps
    assert client.noop()[0] == "OK"
    assert client.logout()[0] == "BYE"


def test_authenticate_plain_and_bad_password(imap_server: ImapServer) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    with pytest.raises(imaplib.IMAP4.error):
        client.login("alice", "wrong")
    typ, _ = client.authenticate("PLAIN", lambda _: b"\0alice\0alice-pass")
    assert typ == "OK"
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_sasl_ir_and_authzid_rules(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    # RFC 4616 2: authzid naming another user is refused (case 015)
    reply = raw.command("a1", "AUTHENTICATE PLAIN Ym9iAGFsaWNlAGFsaWNlLXBhc3M=")
    assert reply[-1].startswith(b"a1 NO")
    reply = raw.command("a2", "AUTHENTICATE PLAIN !!!")
    assert reply[-1].startswith(b"a2 BAD")
    raw.send(b"a3 AUTHENTICATE PLAIN\r\n")
    assert raw.read_line() == b"+ \r\n"
    raw.send(b"*\r\n")
    assert raw.read_response(b"a3")[-1].startswith(b"a3 BAD")
    reply = raw.command("a4", "AUTHENTICATE PLAIN YWxpY2UAYWxpY2UAYWxpY2UtcGFzcw==")
    assert reply[-1].startswith(b"a4 OK")


def test_starttls_then_login(imap_server: ImapServer) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server.port)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    assert client.starttls(context)[0] == "OK"
    assert "STARTTLS" not in client.capabilities
    client.login("alice", "alice-pass")
    client.logout()


def test_starttls_discards_pipelined_plaintext(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    raw.send(b"a1 STARTTLS\r\na2 NOOP\r\n")  # case 003: one write
    assert raw.read_line().startswith(b"a1 OK")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_socket(raw.sock, server_hostname="mail.example.test")
    tls.sendall(b"a3 NOOP\r\n")
    first = tls.recv(1000)
    assert first.startswith(b"a3 OK"), first
    tls.close()


def test_select_examine_and_status(imap_server: ImapServer) -> None:
    client = login(imap_server)
    append(client, "one")
    append(client, "two")
    typ, data = client.status("INBOX", "(MESSAGES UIDNEXT UNSEEN RECENT UIDVALIDITY)")
    assert typ == "OK"
    assert b"MESSAGES 2" in data[0]
    assert b"UIDNEXT 3" in data[0]
    assert b"UNSEEN 2" in data[0]
    typ, data = client.select("INBOX", readonly=True)
    assert data == [b"2"]
    assert "READ-ONLY" in client.untagged_responses
    typ, _ = client.store("1", "+FLAGS", "\\Seen")
    assert typ == "NO"
    typ, data = client.select("INBOX")
    assert client.untagged_responses.get("UIDVALIDITY")
    client.logout()


def test_create_list_rename_delete_subscribe(imap_server: ImapServer) -> None:
    client = login(imap_server)
    assert client.create("Projects/2026")[0] == "OK"
    assert client.create("Projects.2026")[0] == "OK"
    assert client.create("Projects/2026")[0] == "NO"
    typ, data = client.list('""', "*")
    names = [line.decode() for line in data]
    assert any('"Projects/2026"' in n for n in names)
    assert any('"Projects.2026"' in n for n in names)
    assert any("\\HasChildren" in n and '"Projects"' in n for n in names)
    assert any("\\Sent" in n and '"Sent"' in n for n in names)
    assert any("\\Trash" in n for n in names)
    typ, data = client.list('""', "%")
    top = [line.decode() for line in data]
    assert not any("Projects/2026" in n for n in top)
    assert client.rename("Projects/2026", "Archive/2026")[0] == "OK"
    assert client.select("Archive/2026")[0] == "OK"
    assert client.subscribe("Archive/2026")[0] == "OK"
    typ, data = client.lsub('""', "*")
    assert any(b"Archive/2026" in line for line in data)
    assert client.unsubscribe("Archive/2026")[0] == "OK"
    typ, data = client.lsub('""', "Archive*")
    assert data == [None]
    assert client.delete("Archive/2026")[0] == "OK"
    assert client.delete("INBOX")[0] == "NO"
    assert client.select("Archive/2026")[0] == "NO"
    client.logout()


def test_utf7_mailbox_names(imap_server: ImapServer) -> None:
    client = login(imap_server)
    name = "Entw&APw-rfe"  # "Entwürfe"
    assert client.create(name)[0] == "OK"
    typ, data = client.list('""', "Entw*")
    assert b'"Entw&APw-rfe"' in data[0]
    assert client.create("x&AC8-y")[0] == "NO"  # encoded "/" (case 024)
    client.logout()


def test_append_with_flags_and_date(imap_server: ImapServer) -> None:
    client = login(imap_server)
    date = imaplib.Time2Internaldate(1_700_000_000)
    typ, data = client.append(
        "Drafts", "(\\Draft $Label1)", date, b"Subject: d\r\n\r\nx\r\n"
    )
    assert typ == "OK"
    assert re.search(rb"APPENDUID \d+ 1", data[0])
    client.select("Drafts")
    typ, data = client.fetch("1", "(FLAGS INTERNALDATE)")
    assert b"\\Draft" in data[0]
    assert b"$Label1" in data[0]
    assert b"14-Nov-2023" in data[0]
    typ, data = client.append("Nope", None, None, b"x\r\n")
    assert typ == "NO"
    assert data[0].startswith(b"[TRYCREATE]")
    client.logout()


def test_fetch_items(imap_server: ImapServer) -> None:
    client = login(imap_server)
    client.append("INBOX", None, None, MULTIPART)
    client.select("INBOX")
    typ, data = client.fetch("1", "(ENVELOPE)")
    assert b'"=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?="' in data[0]
    assert (
        b'(("Alice" NIL "alice" "example.test")(NIL NIL "bob" "example.test"))'
        in data[0]
    )
    typ, data = client.fetch("1", "(BODYSTRUCTURE)")
    text = data[0]
    assert b'("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT"' in text
    assert b'"MIXED" ("BOUNDARY" "outer")' in text
    assert b'("ATTACHMENT" ("FILENAME" "data.bin"))' in text
    typ, data = client.fetch("1", "(BODY)")
    assert b"BODY ((" in data[0]
    typ, data = client.fetch("1", "(BODY.PEEK[1])")
    assert data[0][1] == "Grüße aus Köln\r\nzweite Zeile".encode()
    typ, data = client.fetch("1", "(BODY.PEEK[2.MIME])")
    assert data[0][1].startswith(b"Content-Type: application/octet-stream")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT TO)])")
    assert data[0][1].startswith(b"To: Alice")
    assert data[0][1].endswith(b"und mehr\r\n\r\n")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT TO)])")
    assert b"Subject" not in data[0][1]
    assert b"From:" in data[0][1]
    typ, data = client.fetch("1", "(BODY.PEEK[]<0.4>)")
    assert data[0][1] == b"From"
    assert b"BODY[]<0>" in data[0][0]
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]
    typ, data = client.fetch("1", "(BODY[TEXT])")
    assert data[0][1].startswith(b"preamble")
    typ, data = client.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    for macro in ("ALL", "FAST", "FULL"):
        typ, data = client.fetch("1", macro)
        assert typ == "OK"
        assert b"RFC822.SIZE" in data[0]
    typ, data = client.fetch("1", "(RFC822.HEADER RFC822.TEXT RFC822 RFC822.SIZE UID)")
    assert typ == "OK"
    client.logout()


def test_byte_exact_body_of_multipart(imap_server: ImapServer) -> None:
    client = login(imap_server)
    client.append("INBOX", None, None, MULTIPART)
    client.select("INBOX")
    typ, data = client.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == MULTIPART
    assert f"RFC822.SIZE {len(MULTIPART)}".encode() in data[0][0]
    client.logout()


def test_store_search_expunge(imap_server: ImapServer) -> None:
    client = login(imap_server)
    for n in range(1, 6):
        append(client, f"message {n}", body=f"needle{n}")
    client.select("INBOX")
    typ, data = client.store("2:3", "+FLAGS", "(\\Deleted \\Flagged)")
    assert len(data) == 2
    assert b"\\Deleted" in data[0]
    typ, data = client.store("3", "-FLAGS.SILENT", "(\\Flagged)")
    assert data == [None]
    typ, data = client.store("4", "FLAGS", "(\\Answered custom)")
    assert b"custom" in data[0]
    assert client.search(None, "DELETED")[1] == [b"2 3"]
    assert client.search(None, "FLAGGED")[1] == [b"2"]
    assert client.search(None, "NOT DELETED")[1] == [b"1 4 5"]
    assert client.search(None, "OR ANSWERED FLAGGED")[1] == [b"2 4"]
    assert client.search(None, "KEYWORD custom")[1] == [b"4"]
    assert client.search(None, "SUBJECT", '"message 5"')[1] == [b"5"]
    assert client.search(None, "BODY needle3")[1] == [b"3"]
    assert client.search(None, "TEXT needle4")[1] == [b"4"]
    assert client.search(None, 'HEADER FROM "a@example"')[1] == [b"1 2 3 4 5"]
    assert client.search(None, "LARGER 10 SMALLER 100000")[1] == [b"1 2 3 4 5"]
    assert client.search(None, "2:3")[1] == [b"2 3"]
    assert client.search(None, "UID 4:*")[1] == [b"4 5"]
    assert client.search(None, "SINCE 1-Jan-2000 BEFORE 1-Jan-2100")[1] == [
        b"1 2 3 4 5"
    ]
    assert client.search(None, "ON 1-Jan-2000")[1] == [b""]
    assert client.search(None, "NEW")[1] == [b"1 2 3 4 5"]
    assert client.search("UTF-8", "ALL")[0] == "OK"
    typ, _ = client.search("KOI8-R", "ALL")
    assert typ == "NO"
    typ, data = client.uid("SEARCH", "DELETED")
    assert data == [b"2 3"]
    typ, data = client.expunge()
    assert data == [b"2", b"2"]
    typ, data = client.fetch("1:*", "(UID)")
    assert [re.search(rb"UID (\d+)", d).group(1) for d in data] == [b"1", b"4", b"5"]
    client.logout()


def test_uid_commands_copy_move(imap_server: ImapServer) -> None:
    client = login(imap_server)
    for n in range(1, 4):
        append(client, f"m{n}")
    client.select("INBOX")
    typ, data = client.uid("COPY", "1:2", "Trash")
    assert typ == "OK"
    typ, data = client.uid("MOVE", "3", "Junk")
    assert typ == "OK"
    typ, data = client.uid("FETCH", "1:*", "(FLAGS)")
    assert len([d for d in data if d]) == 2
    client.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    typ, data = client.uid("EXPUNGE", "2")
    assert typ == "OK"
    typ, data = client.uid("SEARCH", "ALL")
    assert data == [b"1"]
    assert client.copy("1", "NoSuchBox")[0] == "NO"
    client.select("Junk")
    typ, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"m3" in data[0][1]
    client.select("Trash")
    assert client.search(None, "ALL")[1] == [b"1 2"]
    client.logout()


def test_check_close_unselect_namespace_id_enable(imap_server: ImapServer) -> None:
    client = login(imap_server)
    append(client, "x")
    client.select("INBOX")
    assert client.check()[0] == "OK"
    client.store("1", "+FLAGS", "\\Deleted")
    assert client._simple_command("UNSELECT")[0] == "OK"
    client.select("INBOX")
    assert client.search(None, "ALL")[1] == [b"1"]
    assert client.close()[0] == "OK"
    client.select("INBOX")
    assert client.search(None, "ALL")[1] == [b""]
    typ, data = client.namespace()
    assert data == [b'(("" "/")) NIL NIL']
    typ, data = client.xatom("ID", '("name" "test")')
    assert typ == "OK"
    client.unselect()
    typ, data = client.enable("CONDSTORE")
    assert typ == "OK"
    client.logout()


def test_idle_sees_other_session(imap_server: ImapServer) -> None:
    watcher = imap_server.raw()
    watcher.command("w1", "LOGIN alice alice-pass")
    watcher.command("w2", "SELECT INBOX")
    watcher.send(b"w3 IDLE\r\n")
    assert watcher.read_line().startswith(b"+ ")
    other = login(imap_server)
    append(other, "pushed")
    assert watcher.read_line() == b"* 1 EXISTS\r\n"
    assert watcher.read_line() == b"* 1 RECENT\r\n"
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Flagged")
    assert watcher.read_line() == b"* 1 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    other.store("1", "+FLAGS", "\\Deleted")
    watcher.read_line()
    other.expunge()
    assert watcher.read_line() == b"* 1 EXPUNGE\r\n"
    watcher.send(b"DONE\r\n")
    assert watcher.read_line().startswith(b"w3 OK")
    other.logout()
