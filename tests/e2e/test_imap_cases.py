"""The IMAP cases of shared/cases, over a raw socket to a running server."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from tests.services.imapd_fixtures import ImapServer, Raw, imap_server

__all__ = ["imap_server"]


def logged_in(server: ImapServer, user: str = "alice") -> Raw:
    raw = server.raw()
    assert raw.command("l", f"LOGIN {user} {user}-pass")[-1].startswith(b"l OK")
    return raw


def append(raw: Raw, message: bytes, mailbox: str = "INBOX") -> list[bytes]:
    head = f"ap APPEND {mailbox} {{{len(message)}+}}\r\n".encode()
    raw.send(head + message + b"\r\n")
    return raw.read_response(b"ap")


def tagged(lines: list[bytes]) -> bytes:
    return lines[-1]


# --- case 016: literal counts ----------------------------------------------


def test_case_016_literal_counts(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    for tag, count in [("a2", "-1"), ("a3", ""), ("a5", " 5"), ("a6", "+5")]:
        reply = raw.command(tag, f"LOGIN {{{count}}}")
        assert tagged(reply) == f"{tag} BAD Invalid literal\r\n".encode()
    assert tagged(raw.command("a4", "LOGIN {9999999999}")).startswith(b"a4 BAD")
    full_width = "LOGIN {５}".encode()
    assert tagged(raw.command("a4b", full_width)).startswith(b"a4b BAD")
    assert tagged(raw.command("a4c", "LOGIN {1_0}")).startswith(b"a4c BAD")
    # RFC 3501 9 / RFC 7888: pre-auth literals are capped; refused at once
    assert tagged(raw.command("a1", "LOGIN {400000000}")).startswith(b"a1 NO")
    assert tagged(raw.command("a7", "NOOP")) == b"a7 OK NOOP completed\r\n"


def test_case_016_refused_nonsync_literal_is_consumed(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    payload = b"x" * 9000  # above the pre-auth limit, sent anyway (LITERAL+)
    raw.send(b"a1 LOGIN {9000+}\r\n" + payload + b" pass\r\n")
    assert tagged(raw.read_response(b"a1")).startswith(b"a1 NO [TOOBIG]")
    assert tagged(raw.command("a2", "NOOP")).startswith(b"a2 OK")


def test_case_016_negative_literal_after_login(imap_server: ImapServer) -> None:
    raw = logged_in(imap_server)
    raw.command("s", "SELECT INBOX")
    assert tagged(raw.command("a8", "SEARCH {-100}")).startswith(b"a8 BAD")
    assert tagged(raw.command("a9", "NOOP")).startswith(b"a9 OK")


# --- case 018: quoted strings ------------------------------------------------


def test_case_018_quoted_strings(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    probes = [
        b'a1 LOGIN "al\x00ice" "alice-pass"\r\n',
        b'a2 LOGIN "alice" "alice-pass\x00junk"\r\n',
        b'a4 LOGIN "alice\\x" "alice-pass"\r\n',
        b'a5 LOGIN "ali\rce" "alice-pass"\r\n',
        b'a6 LOGIN "alice" "alice-pass\r\n',
    ]
    for probe in probes:
        raw.send(probe)
        assert tagged(raw.read_response(probe[:2])).startswith(probe[:2] + b" BAD")
    assert tagged(raw.command("a2b", "SELECT INBOX")).startswith(b"a2b BAD")
    raw.send(b"a3 LOGIN {6}\r\n")
    assert raw.read_line().startswith(b"+ ")
    raw.send(b'al\x00ice "alice-pass"\r\n')
    assert tagged(raw.read_response(b"a3")).startswith(b"a3 BAD")
    assert tagged(raw.command("a7", 'LOGIN "alice" "alice-pass"')).startswith(b"a7 OK")
    raw.send(b'a8 SELECT "IN\x00BOX"\r\n')
    assert tagged(raw.read_response(b"a8")).startswith(b"a8 BAD")
    assert tagged(raw.command("a9", "NOOP")).startswith(b"a9 OK")


# --- case 022: UID and sequence sets ---------------------------------------


def _inbox_with_uids_3_5_9(server: ImapServer) -> Raw:
    raw = logged_in(server)
    for n in range(1, 10):
        append(raw, f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())
    raw.command("s", "SELECT INBOX")
    raw.command("d", "UID STORE 1:2,4,6:8 +FLAGS.SILENT (\\Deleted)")
    raw.command("e", "EXPUNGE")
    return raw


def test_case_022_sequence_set_edges(imap_server: ImapServer) -> None:
    raw = _inbox_with_uids_3_5_9(imap_server)
    assert raw.command("a1", "UID FETCH 1 (UID)") == [b"a1 OK UID FETCH completed\r\n"]
    assert tagged(raw.command("a2", "UID STORE 1:2 +FLAGS (\\Deleted)")).startswith(
        b"a2 OK"
    )
    assert raw.command("a3", "UID EXPUNGE 1:2") == [b"a3 OK UID EXPUNGE completed\r\n"]
    assert raw.command("a4", "UID FETCH 10:* (UID)")[:-1] == [b"* 3 FETCH (UID 9)\r\n"]
    assert raw.command("a5", "UID FETCH *:4 (UID)")[:-1] == [
        b"* 2 FETCH (UID 5)\r\n",
        b"* 3 FETCH (UID 9)\r\n",
    ]
    assert raw.command("a6", "FETCH *:2 (UID)")[:-1] == [
        b"* 2 FETCH (UID 5)\r\n",
        b"* 3 FETCH (UID 9)\r\n",
    ]
    assert raw.command("a7", "UID FETCH 4294967295 (UID)") == [
        b"a7 OK UID FETCH completed\r\n"
    ]
    assert tagged(raw.command("a8", "UID FETCH 4294967296 (UID)")).startswith(b"a8 BAD")
    assert tagged(raw.command("a9", "UID FETCH 0 (UID)")).startswith(b"a9 BAD")
    assert tagged(raw.command("a10", "FETCH 4 (UID)")).startswith(b"a10 BAD")
    assert raw.command("a11", "UID SEARCH UID 6:8")[0] == b"* SEARCH\r\n"
    raw.command("c", "CREATE Empty")
    raw.command("a12", "SELECT Empty")
    assert tagged(raw.command("a13", "FETCH * (UID)")).startswith(b"a13 BAD")
    assert raw.command("a14", "UID FETCH 1:* (UID)") == [
        b"a14 OK UID FETCH completed\r\n"
    ]
    raw.command("s", "SELECT INBOX")
    # after a2/a3 the three messages are unchanged (\Recent went to the
    # first SELECT of this session)
    assert raw.command("f", "FETCH 1:* (UID FLAGS)")[:-1] == [
        b"* 1 FETCH (UID 3 FLAGS ())\r\n",
        b"* 2 FETCH (UID 5 FLAGS ())\r\n",
        b"* 3 FETCH (UID 9 FLAGS ())\r\n",
    ]


# --- case 023: sessions see each other ---------------------------------------


def test_case_023_expunge_by_other_session(imap_server: ImapServer) -> None:
    a = logged_in(imap_server)
    for word in ("one", "two", "three"):
        append(a, f"Subject: {word}\r\n\r\n{word}\r\n".encode())
    assert b"* 3 EXISTS\r\n" in a.command("a1", "SELECT INBOX")
    b = logged_in(imap_server)
    assert b"* 3 EXISTS\r\n" in b.command("b1", "SELECT INBOX")
    b.command("b2", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert b.command("b3", "EXPUNGE")[0] == b"* 1 EXPUNGE\r\n"

    reply = a.command("a2", "FETCH 2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert reply[0].startswith(b"* 2 FETCH (UID 2 ")
    assert b"Subject: two" in reply[0]
    assert not any(b"EXPUNGE" in line for line in reply)
    reply = a.command("a3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: two" not in b"".join(reply)
    assert tagged(reply).startswith(b"a3 NO [EXPUNGEISSUED]")
    reply = a.command("a4", "STORE 3 +FLAGS (\\Flagged)")
    assert reply[0].startswith(b"* 3 FETCH (FLAGS (\\Flagged")
    assert a.command("a5", "NOOP")[0] == b"* 1 EXPUNGE\r\n"
    assert a.command("a6", "FETCH 1:* (UID)")[:-1] == [
        b"* 1 FETCH (UID 2)\r\n",
        b"* 2 FETCH (UID 3)\r\n",
    ]
    reply = a.command("a6b", "UID FETCH 2:3 (FLAGS)")
    assert b"Flagged" not in reply[0]
    assert b"Flagged" in reply[1]

    a.send(b"a7 IDLE\r\n")
    assert a.read_line().startswith(b"+ ")
    append(b, b"Subject: four\r\n\r\nfour\r\n")
    assert a.read_line() == b"* 3 EXISTS\r\n"
    a.read_line()  # RECENT
    b.command("b5", "UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    assert a.read_line().startswith(b"* 3 FETCH (FLAGS (\\Deleted")
    b.command("b6", "UID EXPUNGE 4")
    assert a.read_line() == b"* 3 EXPUNGE\r\n"
    a.send(b"DONE\r\n")
    assert a.read_line() == b"a7 OK IDLE terminated\r\n"


# --- case 024: names that escape the Maildir ----------------------------------


def _tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            digest.update(str(full.relative_to(path)).encode())
            digest.update(full.read_bytes())
    return digest.hexdigest()


def test_case_024_path_traversal(imap_server: ImapServer) -> None:
    alice = imap_server.maildir("alice").parent
    before = _tree_hash(alice)
    raw = logged_in(imap_server, "al")
    refused = [
        'CREATE "../alice/Stolen"',
        'SELECT "../alice"',
        'CREATE "INBOX/../../alice/x"',
        'CREATE "/etc/roost-test"',
        'CREATE ".."',
        'CREATE "a//b"',
        'CREATE "&AC4ALgAvAGIAbwBi-"',
        'CREATE "x&AC8-y"',
        'RENAME INBOX "../alice/INBOX2"',
        'STATUS "../alice/INBOX" (MESSAGES)',
        'DELETE "../alice"',
        'SUBSCRIBE "../alice"',
        'CREATE "."',
        'CREATE "x/./y"',
    ]
    for n, command in enumerate(refused):
        reply = raw.command(f"r{n}", command)
        assert tagged(reply).startswith(f"r{n} NO".encode()), (command, reply)
    assert raw.command("a10", 'LIST "../" "*"') == [b"a10 OK LIST completed\r\n"]
    assert raw.command("a11", 'LIST "" "../alice/*"') == [b"a11 OK LIST completed\r\n"]
    assert tagged(raw.command("a13", 'CREATE "Projects.2026"')).startswith(b"a13 OK")
    assert tagged(raw.command("a14", 'CREATE "Projects/2026"')).startswith(b"a14 OK")
    listing = b"".join(raw.command("a15", 'LIST "" "*"'))
    assert b'"/" "Projects.2026"' in listing
    assert b'"/" "Projects/2026"' in listing
    assert _tree_hash(alice) == before
    assert not Path("/etc/roost-test").exists()
    for entry in imap_server.maildir("al").iterdir():
        assert entry.resolve().parent == imap_server.maildir("al").resolve()


# --- case 026: bare LF and no final newline ---------------------------------------

CASE_026 = [
    b"From: a@example.org\nTo: alice@example.test\nSubject: lf only\n"
    b"\nline 1\nline 2\n",
    b"From: a@example.org\r\nSubject: mixed\n\tfolded with bare LF\r\n\r\nbody\r\n",
    b"From: a@example.org\r\nSubject: no final newline\r\n\r\nlast line without CRLF",
    b"From: a@example.org\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=x\n\n"
    b"--x\nContent-Type: text/plain\n\none\n"
    b"--x\nContent-Type: text/plain\n\ntwo\n--x--\n",
]


def _literal(line: bytes) -> bytes:
    start = line.index(b"}\r\n", line.index(b"{")) + 3
    count = int(line[line.index(b"{") + 1 : start - 3])
    return line[start : start + count]


def test_case_026_sizes_agree(imap_server: ImapServer) -> None:
    raw = logged_in(imap_server)
    for message in CASE_026:
        assert tagged(append(raw, message)).startswith(b"ap OK")
    raw.command("s", "SELECT INBOX")
    for n in range(1, 5):
        first = raw.command("f1", f"FETCH {n} (RFC822.SIZE BODYSTRUCTURE)")[0]
        size = int(re.search(rb"RFC822\.SIZE (\d+)", first).group(1))
        whole = _literal(raw.command("f2", f"FETCH {n} (BODY.PEEK[])")[0])
        assert len(whole) == size
        assert b"\n" not in whole.replace(b"\r\n", b"")
        header = _literal(raw.command("f3", f"FETCH {n} (BODY.PEEK[HEADER])")[0])
        text = _literal(raw.command("f3", f"FETCH {n} (BODY.PEEK[TEXT])")[0])
        assert header + text == whole
        part = _literal(raw.command("f5", f"FETCH {n} (BODY.PEEK[]<10.20>)")[0])
        assert part == whole[10:30]
        if n == 3:
            assert whole.endswith(b"without CRLF")
        if n == 4:
            assert b'"PLAIN" NIL NIL NIL "7BIT" 3 1' in first
            two = _literal(raw.command("f4", "FETCH 4 (BODY.PEEK[2])")[0])
            assert two == b"two"
    assert tagged(raw.command("n", "NOOP")).startswith(b"n OK")


def test_case_005_nul_never_sent(imap_server: ImapServer) -> None:
    from roost.mailstore.maildir import deliver

    deliver(imap_server.maildir("alice"), b"Subject: nul\n\nbefore\x00after\n")
    raw = logged_in(imap_server)
    raw.command("s", "SELECT INBOX")
    body = raw.command("f", "FETCH 1 (BODY.PEEK[])")[0]
    assert b"\x00" not in body
    assert b"after" in body


# --- case 020: deep nesting and many parts --------------------------------------


def _nested(depth: int) -> bytes:
    lines = [
        b"From: s@example.org",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b0"',
        b"",
    ]
    for level in range(1, depth):
        lines += [
            b"--b%d" % (level - 1),
            b'Content-Type: multipart/mixed; boundary="b%d"' % level,
            b"",
        ]
    lines += [b"--b%d" % (depth - 1), b"Content-Type: text/plain", b"", b"leaf"]
    for level in reversed(range(depth)):
        lines.append(b"--b%d--" % level)
    return b"\r\n".join(lines) + b"\r\n"


def _many_parts(count: int, subtype: bytes = b"mixed") -> bytes:
    out = [
        b"From: s@example.org",
        b"MIME-Version: 1.0",
        b"Content-Type: multipart/" + subtype + b"; boundary=p",
        b"",
    ]
    for n in range(1, count + 1):
        kind = b"message/rfc822" if n in (9999, 10000, 10001) else b"text/plain"
        out += [b"--p", b"Content-Type: " + kind, b"", b"Subject: x", b"", b"part"]
    out.append(b"--p--")
    return b"\r\n".join(out) + b"\r\n"


def test_case_020_deep_and_wide_messages(imap_server: ImapServer) -> None:
    from roost.mailstore.maildir import deliver

    inbox = imap_server.maildir("alice")
    messages = [
        _nested(99),
        _nested(100),
        _nested(101),
        _nested(5000),
        _many_parts(20000),
        _many_parts(20000, b"digest"),
        _nested(50)[:-40],
    ]
    for message in messages:
        deliver(inbox, message.replace(b"\r\n", b"\n"))
    raw = logged_in(imap_server)
    raw.command("s", "SELECT INBOX")
    first = raw.command("a1", "FETCH 1:* (BODYSTRUCTURE)")
    assert tagged(first).startswith(b"a1 OK")
    assert len(first) == len(messages) + 1
    assert raw.command("a1b", "FETCH 1:* (BODYSTRUCTURE)")[:-1] == first[:-1]
    assert tagged(raw.command("a2", "FETCH 1 (BODY.PEEK[1.1.1.1.1.1])")).startswith(
        b"a2 OK"
    )
    found = raw.command("a3", "SEARCH BODY leaf")[0]
    assert found.startswith(b"* SEARCH 1")
    assert tagged(raw.command("a4", "NOOP")).startswith(b"a4 OK")


def test_many_bad_commands_end_the_session(imap_server: ImapServer) -> None:
    raw = imap_server.raw()
    for n in range(20):
        assert tagged(raw.command(f"b{n}", "BOGUS")).startswith(f"b{n} BAD".encode())
    raw.send(b"last BOGUS\r\n")
    assert raw.read_line().startswith(b"last BAD")
    assert raw.read_line() == b"* BYE Too many invalid commands\r\n"
    assert raw.sock.recv(10) == b""


def test_bad_commands_counted_only_in_a_row(imap_server: ImapServer) -> None:
    # a well-formed command (OK or NO) starts the count again, as dovecot
    raw = imap_server.raw()
    for round_ in range(3):
        for n in range(15):
            tag = f"r{round_}b{n}"
            assert tagged(raw.command(tag, "BOGUS")).startswith(f"{tag} BAD".encode())
        assert tagged(raw.command(f"r{round_}", "NOOP")).startswith(b"r")
    for n in range(15):
        assert tagged(raw.command(f"x{n}", "BOGUS")).startswith(f"x{n} BAD".encode())
    assert tagged(raw.command("n", "LOGIN nobody wrong")).startswith(b"n NO")
    for n in range(20):
        assert tagged(raw.command(f"y{n}", "BOGUS")).startswith(f"y{n} BAD".encode())
    raw.send(b"last BOGUS\r\n")
    assert raw.read_line().startswith(b"last BAD")
    assert raw.read_line() == b"* BYE Too many invalid commands\r\n"
    assert raw.sock.recv(10) == b""


def test_bad_literal_counts_end_the_session_only_after_login(
    imap_server: ImapServer,
) -> None:
    # case 016 / dovecot: before login a malformed literal count is
    # answered BAD each time and not held against the client; after
    # login it counts like any other invalid command
    raw = imap_server.raw()
    raw.send(b"".join(b"p%d NOOP {-%d}\r\n" % (n, n) for n in range(50)))
    for n in range(50):
        assert raw.read_line().startswith(b"p%d BAD" % n)
    assert tagged(raw.command("l", "LOGIN alice alice-pass")).startswith(b"l OK")
    raw.send(b"".join(b"c%d NOOP {-1}\r\n" % n for n in range(30)))
    # what already arrived is answered, then the BYE
    answered = 0
    while (line := raw.read_line()).startswith(b"c%d BAD" % answered):
        answered += 1
    assert answered > 20
    assert line == b"* BYE Too many invalid commands\r\n"
    assert raw.buffer == b""
    assert raw.sock.recv(10) == b""


@pytest.mark.parametrize("where", ["command", "idle"])
def test_line_too_long_says_bye_and_closes(imap_server: ImapServer, where: str) -> None:
    # RFC 3501 7.1.5: BYE, then the server closes (it used to keep reading)
    raw = imap_server.raw()
    if where == "idle":
        raw = logged_in(imap_server)
        raw.send(b"i IDLE\r\n")
        assert raw.read_line().startswith(b"+ ")
    raw.send(b"a" * 70_000)
    assert raw.read_line() == b"* BYE Line too long\r\n"
    assert raw.sock.recv(10) == b""
