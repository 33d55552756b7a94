"""Case 018: IMAP quoted strings and literals with NUL, bad escapes, CR.

RFC 3501 9: QUOTED-CHAR is any TEXT-CHAR except quoted-specials, or `\\`
followed by `"` or `\\`; TEXT-CHAR excludes CR and LF; CHAR (RFC 5234)
is %x01-7F, so no NUL. `literal` is *CHAR8 with CHAR8 = %x01-ff: no NUL
there either. Each syntax error is a tagged BAD and the connection goes
on (RFC 3501 7.1.3); authentication compares the full strings.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


PROBES = [
    b'LOGIN "al\x00ice" "alice-pass"',
    b'LOGIN "alice" "alice-pass\x00junk"',
    b'LOGIN "alice" "alice-pass\x00"',
    b'LOGIN "\x00alice" "alice-pass"',
    b'LOGIN "alice\\x" "alice-pass"',
    b'LOGIN "alice" "alice-pass\\"',
    b'LOGIN "ali\rce" "alice-pass"',
    b'LOGIN "alice" "alice-pass',
    b"LOGIN alice alice-pass\x00",
    b"LOGIN al\x00ice alice-pass",
]


@pytest.mark.parametrize("probe", PROBES, ids=repr)
def test_case_018_bad_strings_get_bad_and_no_login(
    server: CaseServer, probe: bytes
) -> None:
    imap = server.imap()
    reply = imap.command("a1", probe)
    assert reply[-1].startswith(b"a1 BAD"), reply
    # not authenticated after it
    assert imap.command("a2", "SELECT INBOX")[-1].startswith((b"a2 BAD", b"a2 NO"))
    assert imap.command("a7", 'LOGIN "alice" "alice-pass"')[-1].startswith(b"a7 OK")
    assert imap.command("a8", "SELECT INBOX")[-1].startswith(b"a8 OK")


def test_case_018_eight_bit_password_never_matches(server: CaseServer) -> None:
    """8-bit octets are not CHAR (RFC 3501 9); RFC 9051 lets valid UTF-8
    through. Either BAD or NO, but never a login with a mangled string."""
    imap = server.imap()
    for probe in (b'"alice-\x80pass"', b'"alice-pass\xff"', b'"alice-pas\xc3"'):
        reply = imap.command("a1", b'LOGIN "alice" ' + probe)
        assert reply[-1].startswith((b"a1 BAD", b"a1 NO")), reply


@pytest.mark.parametrize(
    "literal",
    [b"al\x00ice", b"\x00alice", b"alice\x00"],
    ids=repr,
)
def test_case_018_nul_in_literal(server: CaseServer, literal: bytes) -> None:
    imap = server.imap()
    imap.send(b"a3 LOGIN {%d}\r\n" % len(literal))
    assert imap.read_line().startswith(b"+")
    imap.send(literal + b' "alice-pass"\r\n')
    assert imap.read_response(b"a3")[-1].startswith(b"a3 BAD")
    assert imap.command("a4", "SELECT INBOX")[-1].startswith((b"a4 BAD", b"a4 NO"))
    assert imap.command("a9", "NOOP")[-1].startswith(b"a9 OK")


def test_case_018_escapes_that_are_legal(server: CaseServer) -> None:
    imap = server.imap()
    imap.login("alice", "alice-pass")
    assert imap.command("c", 'CREATE "q\\"uote\\\\d"')[-1].startswith(b"c OK")
    listed = b"".join(imap.command("l", 'LIST "" "q*"'))
    assert b'"q\\"uote\\\\d"' in listed
    assert imap.command("d", 'DELETE "q\\"uote\\\\d"')[-1].startswith(b"d OK")


@pytest.mark.parametrize(
    "command",
    [
        b'SELECT "IN\x00BOX"',
        b'CREATE "x\x00y"',
        b'STATUS "IN\x00BOX" (MESSAGES)',
        b'SEARCH SUBJECT "a\x00b"',
        b'LIST "" "*\x00"',
        b'SELECT "INBOX\r"',
    ],
    ids=repr,
)
def test_case_018_nul_after_login(server: CaseServer, command: bytes) -> None:
    imap = server.imap()
    imap.login("alice", "alice-pass")
    assert imap.command("s0", "SELECT INBOX")[-1].startswith(b"s0 OK")
    assert imap.command("a8", command)[-1].startswith(b"a8 BAD")
    assert imap.command("a9", "NOOP")[-1].startswith(b"a9 OK")
    created = b"".join(imap.command("l", 'LIST "" "*"'))
    assert b"\x00" not in created


def test_case_018_fuzz_positions(server: CaseServer) -> None:
    """NUL, CR, LF, backslash and 8-bit octets at every position."""
    imap = server.imap()
    word = b"alice"
    n = 0
    for bad in (b"\x00", b"\r", b"\\", b"\xff"):
        for pos in range(len(word) + 1):
            n += 1
            probe = b'LOGIN "' + word[:pos] + bad + word[pos:] + b'" "alice-pass"'
            reply = imap.command(f"f{n}", probe)
            assert reply[-1].startswith((f"f{n} BAD".encode(), f"f{n} NO".encode())), (
                probe,
                reply,
            )
            if n % 15 == 0:  # stay under any too-many-errors limit
                imap = server.imap()
