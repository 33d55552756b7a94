"""Command grammar: FETCH items, sections, SEARCH keys, STORE, LIST."""

from __future__ import annotations

import pytest

from roost.protocols.imap.commands import (
    FetchAtt,
    SearchKey,
    Section,
    build_command,
    parse_command,
    parse_section,
)
from roost.protocols.imap.errors import ImapError, Status


def parse(line: bytes, literals: list[bytes] | None = None):  # type: ignore[no-untyped-def]
    segments = [line]
    for literal in literals or []:
        segments += [literal, b""]
    return build_command(*parse_command(segments))


def test_fetch_items_and_sections() -> None:
    cmd = parse(
        b'a FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (Subject "To")]<0.10>)'
    )
    assert cmd.items == (
        FetchAtt("FLAGS"),
        FetchAtt(
            "BODY", Section((1, 2), "HEADER.FIELDS", ("Subject", "To")), True, (0, 10)
        ),
    )
    assert parse(b"a FETCH 1 FAST").items == (
        FetchAtt("FLAGS"),
        FetchAtt("INTERNALDATE"),
        FetchAtt("RFC822.SIZE"),
    )
    uid = parse(b"a UID FETCH 1 FLAGS")
    assert uid.items[0] == FetchAtt("UID")


@pytest.mark.parametrize(
    "text", ["0", "1.", ".1", "HEADER.FIELDS", "1.MIME.2", "MIME", "TEXT (A)", "1.X"]
)
def test_bad_sections(text: str) -> None:
    with pytest.raises(ImapError):
        parse_section(text)


def test_section_labels() -> None:
    assert parse_section("").label() == ""
    assert parse_section("2.1.mime").label() == "2.1.MIME"
    assert parse_section("HEADER.FIELDS.NOT (A B)").label() == "HEADER.FIELDS.NOT (A B)"


def test_search_keys() -> None:
    cmd = parse(
        b'a SEARCH CHARSET UTF-8 OR (FROM "x" SEEN) NOT 1:3 HEADER X-A {2}',
        [b"\xc3\xa4"],
    )
    assert cmd.charset == "UTF-8"
    assert cmd.key.op == "AND"
    either, header = cmd.key.args
    assert either.op == "OR"
    left, right = either.args
    assert left == SearchKey("AND", (SearchKey("FROM", ("x",)), SearchKey("SEEN")))
    assert right.op == "NOT"
    assert right.args[0].op == "SEQ"
    assert header == SearchKey("HEADER", ("X-A", "ä"))


def test_search_bad_charset_is_no_with_code() -> None:
    with pytest.raises(ImapError) as info:
        parse(b"a SEARCH CHARSET KOI8-R ALL")
    assert info.value.status is Status.NO
    assert info.value.code == "BADCHARSET (US-ASCII UTF-8)"


def test_search_nesting_is_bounded() -> None:
    with pytest.raises(ImapError):
        parse(b"a SEARCH " + b"NOT " * 100 + b"ALL")


def test_store_and_flags() -> None:
    cmd = parse(b"a STORE 1 +FLAGS.SILENT (\\seen $Label)")
    assert (cmd.mode, cmd.silent, cmd.flags) == ("+", True, ("\\Seen", "$Label"))
    with pytest.raises(ImapError):
        parse(b"a STORE 1 FLAGS (\\Bogus)")
    with pytest.raises(ImapError):
        parse(b"a STORE 1 XFLAGS (\\Seen)")


def test_mailbox_names_decode_and_refuse() -> None:
    assert parse(b"a SELECT inbox").mailbox == "INBOX"
    assert parse(b"a CREATE Entw&APw-rfe").mailbox == "Entwürfe"
    with pytest.raises(ImapError) as info:
        parse(b"a CREATE x&AC8-y")
    assert info.value.status is Status.NO


def test_list_extended_selection() -> None:
    cmd = parse(b'a LIST (SPECIAL-USE) "" "*" RETURN (CHILDREN)')
    assert cmd.special_use_only
    assert cmd.pattern == "*"
