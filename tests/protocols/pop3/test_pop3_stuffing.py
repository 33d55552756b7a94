"""RETR/TOP body encoding: CRLF, byte-stuffing, terminator (cases 026, 028)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocols.pop3 import DotStuffer, encode_message, served_size


def unstuff(wire: bytes) -> bytes:
    """What a strict client (like poplib) makes of a multi-line body."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")
    assert lines[-2:] == [b".", b""]
    out = []
    for line in lines[:-2]:
        assert line != b"."
        out.append(line[1:] if line.startswith(b".") else line)
    return b"".join(line + b"\r\n" for line in out)


def lf_split_lines(wire: bytes) -> list[bytes]:
    """Lines as an LF-splitting reader sees them, up to the terminator."""
    seen = []
    for line in wire.split(b"\n"):
        if line.rstrip(b"\r") == b".":
            break
        seen.append(line)
    return seen


def to_crlf(data: bytes) -> bytes:
    text = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if text and not text.endswith(b"\n"):
        text += b"\r\n"
    return text


CASE_028 = {
    "m1": b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nend\r\n",
    "m2": b".first line is a dot line\r\n\r\nbody\r\n",
    "m3": b"Subject: lf\r\n\r\nline\n.\nafter bare-LF dot\r\n",
    "m4": b"Subject: no final newline\r\n\r\nlast line",
    "m5": b"Subject: big\r\n\r\n" + (b"x" * 8191 + b"\r\n.") * 200 + b"\r\n",
}

CASE_026 = {
    "lf": b"From: a@example.org\nTo: alice@example.test\nSubject: lf only\n\n"
    b"line 1\nline 2\n",
    "mixed": b"From: a@example.org\r\nSubject: mixed\n\tfolded with bare LF\r\n"
    b"\r\nbody\r\n",
    "no-final": b"From: a@example.org\r\nSubject: no final newline\r\n\r\n"
    b"last line without CRLF",
}


def test_case_028_m1_wire_form() -> None:
    assert encode_message(CASE_028["m1"]) == (
        b"Subject: dots\r\n\r\n..leading dot\r\n..\r\n...two dots\r\nend\r\n.\r\n"
    )


def test_first_line_dot_is_stuffed() -> None:
    assert encode_message(CASE_028["m2"]).startswith(b"..first line")


def test_bare_lf_dot_line_cannot_end_the_body() -> None:
    wire = encode_message(CASE_028["m3"])
    assert b"\r\n..\r\nafter bare-LF dot\r\n" in wire
    assert lf_split_lines(wire)[-1] == b"after bare-LF dot\r"


def test_no_final_newline_gets_exactly_one_crlf() -> None:
    assert encode_message(CASE_028["m4"]).endswith(b"\r\nlast line\r\n.\r\n")
    assert encode_message(b"a\r\n").endswith(b"a\r\n.\r\n")
    assert not encode_message(b"a\r\n").endswith(b"\r\n\r\n.\r\n")


def test_empty_message_is_only_the_terminator() -> None:
    assert encode_message(b"") == b".\r\n"
    assert served_size(b"") == 0


def test_bare_cr_is_kept() -> None:
    assert encode_message(b"a\rb\r\n") == b"a\rb\r\n.\r\n"
    assert encode_message(b"a\r") == b"a\r\r\n.\r\n"
    assert served_size(b"a\r") == 4


@pytest.mark.parametrize("name", sorted(CASE_028) + sorted(CASE_026))
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 8192, 1 << 20])
def test_stored_messages_round_trip(name: str, chunk_size: int) -> None:
    data = {**CASE_028, **CASE_026}[name]
    stuffer = DotStuffer()
    parts = [
        stuffer.feed(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)
    ]
    wire = b"".join(parts) + stuffer.finish()
    assert wire == encode_message(data)
    assert unstuff(wire) == to_crlf(data)
    # RFC 1939 §5 / case 026: LIST size is the unstuffed size.
    assert served_size(data) == len(unstuff(wire))


def test_dots_at_chunk_edges_of_a_big_message() -> None:
    data = CASE_028["m5"]
    stuffer = DotStuffer()
    wire = b"".join(stuffer.feed(data[i : i + 8192]) for i in range(0, len(data), 8192))
    wire += stuffer.finish()
    assert wire.count(b"\r\n..") == 200
    assert len(lf_split_lines(wire)) == data.count(b"\n")


_PIECES = st.sampled_from([b"\r", b"\n", b".", b"a", b"\r\n", b"\n.", b".."])


@given(st.lists(_PIECES, max_size=40), st.integers(min_value=1, max_value=9))
def test_any_split_gives_same_wire_and_consistent_size(
    pieces: list[bytes],
    chunk_size: int,
) -> None:
    data = b"".join(pieces)
    stuffer = DotStuffer()
    wire = b"".join(
        stuffer.feed(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)
    )
    wire += stuffer.finish()
    assert wire == encode_message(data)
    assert unstuff(wire) == to_crlf(data)
    assert len(unstuff(wire)) == served_size(data)
    # No line but the last one is a lone dot, for CRLF and LF readers.
    assert wire.split(b"\r\n").index(b".") == len(wire.split(b"\r\n")) - 2
    assert all(line.rstrip(b"\r") != b"." for line in wire.split(b"\n")[:-2])
