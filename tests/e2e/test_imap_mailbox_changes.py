"""DELETE and RENAME as other sessions see them, over a running service.

RFC 3501 6.3.4: a mailbox with inferior names may be deleted; its messages
go and the name stays as \\Noselect.  A session whose selected mailbox is
deleted or renamed elsewhere is ended with BYE at its next command (or at
once while it idles), as dovecot does: RFC 3501 leaves the choice open, and
a stale view could only answer with stale or wrong data.
"""

from __future__ import annotations

import shutil

import pytest

from tests.services.imapd_fixtures import ImapServer, Raw, imap_server

__all__ = ["imap_server"]


def logged_in(server: ImapServer) -> Raw:
    raw = server.raw()
    assert raw.command("l", "LOGIN alice alice-pass")[-1].startswith(b"l OK")
    return raw


def append(raw: Raw, mailbox: str, text: str) -> None:
    message = f"Subject: {text}\r\n\r\n{text}\r\n".encode()
    raw.send(f"ap APPEND {mailbox} {{{len(message)}+}}\r\n".encode() + message)
    raw.send(b"\r\n")
    assert raw.read_response(b"ap")[-1].startswith(b"ap OK")


def test_delete_with_children_leaves_noselect(imap_server: ImapServer) -> None:
    raw = logged_in(imap_server)
    assert raw.command("c1", "CREATE Work")[-1].startswith(b"c1 OK")
    assert raw.command("c2", "CREATE Work/2026")[-1].startswith(b"c2 OK")
    append(raw, "Work", "parent")
    append(raw, "Work/2026", "child")

    assert raw.command("d1", "DELETE Work")[-1] == b"d1 OK DELETE completed\r\n"
    listing = raw.command("l1", 'LIST "" Work*')
    assert listing[:-1] == [
        b'* LIST (\\Noselect \\HasChildren) "/" "Work"\r\n',
        b'* LIST (\\HasNoChildren) "/" "Work/2026"\r\n',
    ]
    assert raw.command("s1", "SELECT Work")[-1].startswith(b"s1 NO")
    status = raw.command("st", "STATUS Work/2026 (MESSAGES)")
    assert status[0] == b'* STATUS "Work/2026" (MESSAGES 1)\r\n'
    # deleting a \Noselect name with inferiors is an error (RFC 3501 6.3.4)
    assert raw.command("d2", "DELETE Work")[-1].startswith(b"d2 NO")
    # and it can be created again, empty
    assert raw.command("c3", "CREATE Work")[-1].startswith(b"c3 OK")
    status = raw.command("st2", "STATUS Work (MESSAGES)")
    assert status[0] == b'* STATUS "Work" (MESSAGES 0)\r\n'


@pytest.mark.parametrize(
    ("change", "bye"),
    [
        ("RENAME Box Moved", b"* BYE Selected mailbox was renamed"),
        ("RENAME Parent Other", b"* BYE Selected mailbox was renamed"),
        ("DELETE Box", b"* BYE Selected mailbox was deleted"),
    ],
)
def test_selected_elsewhere_gets_bye(
    imap_server: ImapServer, change: str, bye: bytes
) -> None:
    admin = logged_in(imap_server)
    name = "Parent/Box" if "Parent" in change else "Box"
    if "Parent" in change:
        assert admin.command("c0", "CREATE Parent")[-1].startswith(b"c0 OK")
    assert admin.command("c1", f"CREATE {name}")[-1].startswith(b"c1 OK")
    append(admin, name, "one")
    reader = logged_in(imap_server)
    assert reader.command("s", f"SELECT {name}")[-1].startswith(b"s OK")

    assert admin.command("x", change)[-1].startswith(b"x OK")
    reader.send(b"f FETCH 1 (BODY.PEEK[])\r\n")
    assert reader.read_line().startswith(bye)
    assert reader.sock.recv(10) == b""


def test_idle_session_hears_rename_at_once(imap_server: ImapServer) -> None:
    admin = logged_in(imap_server)
    assert admin.command("c1", "CREATE Box")[-1].startswith(b"c1 OK")
    idler = logged_in(imap_server)
    assert idler.command("s", "SELECT Box")[-1].startswith(b"s OK")
    idler.send(b"i IDLE\r\n")
    assert idler.read_line().startswith(b"+ ")
    assert admin.command("r", "RENAME Box Moved")[-1].startswith(b"r OK")
    assert idler.read_line().startswith(b"* BYE Selected mailbox was renamed")
    assert idler.sock.recv(10) == b""


def test_folder_removed_by_another_program(imap_server: ImapServer) -> None:
    raw = logged_in(imap_server)
    assert raw.command("c1", "CREATE Box")[-1].startswith(b"c1 OK")
    assert raw.command("s", "SELECT Box")[-1].startswith(b"s OK")
    shutil.rmtree(imap_server.maildir("alice") / ".Box")
    raw.send(b"n NOOP\r\n")
    assert raw.read_line() == b"* BYE Selected mailbox was deleted\r\n"
    assert raw.sock.recv(10) == b""


def test_own_delete_of_selected_mailbox_unselects(imap_server: ImapServer) -> None:
    raw = logged_in(imap_server)
    assert raw.command("c1", "CREATE Box")[-1].startswith(b"c1 OK")
    assert raw.command("s", "SELECT Box")[-1].startswith(b"s OK")
    assert raw.command("d", "DELETE Box")[-1].startswith(b"d OK")
    assert raw.command("n", "NOOP")[-1] == b"n OK NOOP completed\r\n"
    assert raw.command("f", "FETCH 1 UID")[-1].startswith(b"f BAD")
