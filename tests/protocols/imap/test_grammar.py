"""Modified UTF-7, sequence sets, strings and dates (RFC 3501 5.1.3, 9)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocols.imap.errors import ImapError
from roost.protocols.imap.grammar import (
    SequenceSet,
    decode_mutf7,
    encode_mutf7,
    format_date_time,
    format_uid_set,
    parse_date,
    parse_date_time,
    parse_sequence_set,
    quoted_or_literal,
)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_mutf7_round_trip(name: str) -> None:
    assert decode_mutf7(encode_mutf7(name).encode("ascii")) == name


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b"Entw&APw-rfe", "Entwürfe"), (b"&-", "&"), (b"&ZeVnLIqe-", "日本語")],
)
def test_mutf7_known_values(raw: bytes, text: str) -> None:
    assert decode_mutf7(raw) == text
    assert encode_mutf7(text).encode() == raw


@pytest.mark.parametrize(
    "raw",
    [
        b"&AC8-",
        b"&AC4ALgAvAGIAbwBi-",
        b"&ZeVnLIqe",
        b"&Jjo!-",
        b"caf\xc3\xa9",
        b"tab\there",
        b"&AGE-",
    ],
)
def test_mutf7_refuses_bad_or_ascii_encodings(raw: bytes) -> None:
    # RFC 3501 5.1.3: no printable US-ASCII in base64 (case 024)
    with pytest.raises(ValueError):
        decode_mutf7(raw)


def test_sequence_sets_cover_both_ends_in_any_order() -> None:
    seq = parse_sequence_set("5:2,9,*")
    assert list(seq.resolved(12)) == [(2, 5), (9, 9), (12, 12)]
    assert seq.contains(3, 12)
    assert not seq.contains(6, 12)
    assert parse_sequence_set("*:4") == SequenceSet(((0, 4),))


@pytest.mark.parametrize(
    "text", ["0", "4294967296", "1:0", "", "1,,2", "a", "1:2:3", "-1", "１"]
)
def test_bad_sequence_sets(text: str) -> None:
    with pytest.raises(ImapError):
        parse_sequence_set(text)


@given(st.lists(st.integers(min_value=1, max_value=3000), min_size=1))
def test_uid_set_compression_round_trip(uids: list[int]) -> None:
    ordered = sorted(set(uids))
    parsed = parse_sequence_set(format_uid_set(ordered))
    expanded = [n for lo, hi in parsed.resolved(0) for n in range(lo, hi + 1)]
    assert expanded == ordered


def test_strings_choose_quoted_or_literal() -> None:
    assert quoted_or_literal(b'a "b" \\') == b'"a \\"b\\" \\\\"'
    assert quoted_or_literal("ü".encode()) == b"{2}\r\n\xc3\xbc"
    assert quoted_or_literal(b"a\x00b") == b"{3}\r\na\x80b"  # case 005


def test_dates() -> None:
    assert parse_date("1-Feb-1994") == dt.date(1994, 2, 1)
    moment = parse_date_time("17-Jul-1996 02:44:25 -0700")
    assert format_date_time(moment) == b'"17-Jul-1996 02:44:25 -0700"'
    assert parse_date_time(" 7-Jul-1996 02:44:25 +0000").day == 7
    for bad in ("31-Feb-2020", "1-Foo-2020", "2020-01-01"):
        with pytest.raises(ImapError):
            parse_date(bad)
