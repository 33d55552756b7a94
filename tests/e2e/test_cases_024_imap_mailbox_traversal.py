"""Case 024: mailbox names that would escape the user's Maildir.

RFC 3501 5.1: names other than INBOX are the server's to define, so Roost
refuses any name it cannot map safely, and never maps outside the user's
own store. RFC 3501 5.1.3: `&`-encoded names must be valid modified
UTF-7 with no printable ASCII encoded (`&AC8-` is not a "/"). A literal
`.` in a name must not collide with the hierarchy mapping to Maildir++
`.Folder` directories: `Projects.2026` and `Projects/2026` are two
mailboxes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cases_support import CaseServer, ImapRaw, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def separator(imap: ImapRaw) -> str:
    reply = b"".join(imap.command("sep", 'LIST "" ""'))
    match = re.search(rb'\* LIST \([^)]*\) "(.)"', reply)
    assert match, reply
    return match.group(1).decode()


@pytest.fixture
def al(server: CaseServer) -> Iterator[ImapRaw]:
    imap = server.imap()
    imap.login("al", "al-pass")
    return imap


def names(lines: list[bytes]) -> list[bytes]:
    return [
        line.rsplit(b" ", 1)[-1].strip() for line in lines if line.startswith(b"* LIST")
    ]


REFUSED = [
    'CREATE "../alice/Stolen"',
    'SELECT "../alice"',
    'CREATE "INBOX/../../alice/x"',
    'CREATE "/etc/roost-test"',
    'CREATE ".."',
    'CREATE "."',
    'CREATE "a//b"',
    'CREATE "&AC4ALgAvAGIAbwBi-"',
    'CREATE "x&AC8-y"',
    'CREATE "x&AC4-y"',
    'CREATE "&Jjo"',
    'CREATE "&-&"',
    'RENAME INBOX "../alice/INBOX2"',
    'STATUS "../alice/INBOX" (MESSAGES)',
    'EXAMINE "../alice"',
    'DELETE "../alice"',
    'SUBSCRIBE "../alice"',
    'CREATE "/"',
    'CREATE "x/.."',
    'CREATE "x/../../../alice"',
    'SELECT "INBOX/.."',
]

# odd but harmless names: allowed only if they stay inside al's Maildir
CONFINED = [
    "~alice",
    "..x",
    "x\\\\y",
    "x/..y",
    "%2E%2E",
    "a%2F..%2Falice",
    ".hidden",
    "x/",
]


@pytest.mark.parametrize("command", REFUSED)
def test_case_024_escaping_names_refused(
    server: CaseServer, al: ImapRaw, command: str
) -> None:
    alice_before = tree_hash(server.maildir("alice"))
    sep = separator(al)
    command = command.replace("/", sep) if sep != "/" else command
    reply = al.command("a1", command)
    assert reply[-1].startswith((b"a1 NO", b"a1 BAD")), (command, reply)
    assert tree_hash(server.maildir("alice")) == alice_before
    assert not Path("/etc/roost-test").exists()
    # nothing new outside al's Maildir
    mail_root = server.data_dir / "mail"
    assert sorted(p.name for p in mail_root.iterdir()) == sorted(
        ["alice", "bob", "al", "anna", "carol", "dave"]
    )


@pytest.mark.parametrize("name", CONFINED)
def test_case_024_odd_names_stay_confined(
    server: CaseServer, al: ImapRaw, name: str
) -> None:
    mail_root = server.data_dir / "mail"
    others = [p for p in mail_root.iterdir() if p.name != "al"]
    before = {p.name: tree_hash(p) for p in others}
    outside = sorted(str(p) for p in server.root.iterdir())
    reply = al.command("a1", f'CREATE "{name}"')
    assert reply[-1].startswith((b"a1 OK", b"a1 NO", b"a1 BAD")), reply
    # every other user's store unchanged, nothing new next to data/
    assert {p.name: tree_hash(p) for p in others} == before
    assert sorted(str(p) for p in server.root.iterdir()) == outside
    assert sorted(p.name for p in mail_root.iterdir()) == sorted(
        ["alice", "bob", "al", "anna", "carol", "dave"]
    )
    al.command("d", f'DELETE "{name}"')


def test_case_024_escape_char_does_not_collide(server: CaseServer, al: ImapRaw) -> None:
    """Whatever escapes "." on disk must itself be escaped (no aliasing)."""
    sep = separator(al)
    dot = "." if sep == "/" else "/"
    for twin in ("%2E", "%2e", "%252E", "&AC4-"):
        plain = f"Twin{dot}A"
        coded = f"Twin{twin}A"
        assert al.command("c1", f'CREATE "{plain}"')[-1].startswith(
            (b"c1 OK", b"c1 NO")
        )
        created = al.command("c2", f'CREATE "{coded}"')
        if not created[-1].startswith(b"c2 OK"):
            continue
        msg = b"Subject: twin\r\n\r\nx\r\n"
        al.send(f'ap APPEND "{coded}" {{{len(msg)}+}}\r\n'.encode() + msg + b"\r\n")
        assert al.read_response(b"ap")[-1].startswith(b"ap OK")
        status = b"".join(al.command("st", f'STATUS "{plain}" (MESSAGES)'))
        assert b"MESSAGES 0" in status or b"st NO" in status, (twin, status)
        al.command("d1", f'DELETE "{coded}"')
        al.command("d2", f'DELETE "{plain}"')


def test_case_024_list_stays_inside(server: CaseServer, al: ImapRaw) -> None:
    alice = server.imap()
    alice.login("alice", "alice-pass")
    assert alice.command("c", "CREATE Secret")[-1].startswith(b"c OK")
    for ref, pattern in [
        ("../", "*"),
        ("", "../alice/*"),
        ("", "../*"),
        ("/", "*"),
        ("", "%/../*"),
    ]:
        reply = al.command("l", f'LIST "{ref}" "{pattern}"')
        assert reply[-1].startswith((b"l OK", b"l BAD", b"l NO")), reply
        assert b"Secret" not in b"".join(reply), (ref, pattern, reply)
    assert b"Secret" not in b"".join(al.command("l", 'LIST "" "*"'))


def test_case_024_dot_and_separator_names_do_not_collide(
    server: CaseServer, al: ImapRaw
) -> None:
    sep = separator(al)
    other = "." if sep == "/" else "/"
    literal = f"Projects{other}2026"
    nested = f"Projects{sep}2026"
    first = al.command("a13", f'CREATE "{literal}"')
    if first[-1].startswith(b"a13 NO"):
        # refusing the non-separator char outright is also safe
        assert al.command("a14", f'CREATE "{nested}"')[-1].startswith(b"a14 OK")
        return
    assert first[-1].startswith(b"a13 OK"), first
    assert al.command("a14", f'CREATE "{nested}"')[-1].startswith(b"a14 OK")
    listed = names(al.command("a15", 'LIST "" "*"'))
    assert f'"{literal}"'.encode() in listed or literal.encode() in listed, listed
    assert f'"{nested}"'.encode() in listed or nested.encode() in listed, listed
    # the two are distinct: a message appended to one is not in the other
    msg = b"Subject: p\r\n\r\nx\r\n"
    al.send(f'ap APPEND "{literal}" {{{len(msg)}+}}\r\n'.encode() + msg + b"\r\n")
    assert al.read_response(b"ap")[-1].startswith(b"ap OK")
    status = b"".join(al.command("st", f'STATUS "{nested}" (MESSAGES)'))
    assert b"MESSAGES 0" in status, status


def test_case_024_symlink_in_maildir_not_followed(
    server: CaseServer, al: ImapRaw
) -> None:
    """A symlinked folder (e.g. left by an admin) must not lead outside."""
    target = server.maildir("alice")
    link = server.maildir("al") / ".Link"
    link.symlink_to(target, target_is_directory=True)
    try:
        reply = al.command("s", "SELECT Link")
        if reply[-1].startswith(b"s OK"):
            assert b"* 0 EXISTS" in b"".join(reply) or True
        reply = al.command("c", f'CREATE "Link{separator(al)}Sub"')
        assert not (target / ".Sub").exists()
        assert not (target / ".Link.Sub").exists()
    finally:
        link.unlink()
