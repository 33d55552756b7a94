"""CHUNKING (RFC 3030): BDAT in the server core, driven by bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocols.smtp import events as ev
from roost.protocols.smtp import reply as r
from roost.protocols.smtp.chunking import ChunkCollector
from roost.protocols.smtp.server import State

from .server_driver import Driver

EHLO = b"EHLO client.example.org\r\n"
MAIL = b"MAIL FROM:<sender@example.org>\r\n"
RCPT = b"RCPT TO:<alice@example.test>\r\n"
HEAD = b"Subject: chunks\r\n"
BODY = b"\r\nline one\r\n.\r\nMAIL FROM:<evil@example.org>\r\n"
CHUNKED = b"BDAT %d\r\n" % len(HEAD) + HEAD + b"BDAT %d LAST\r\n" % len(BODY) + BODY


def ready(**kw: object) -> Driver:
    d = Driver(**kw)
    for line in (EHLO, MAIL, RCPT):
        d.feed(line)
    assert d.core.state is State.RCPT
    d.take_output()
    return d


def messages(d: Driver) -> list[ev.DataReceived]:
    return [e for e in d.events if isinstance(e, ev.DataReceived)]


def test_two_chunks_make_one_message() -> None:
    d = ready()
    d.feed(CHUNKED)
    assert d.take_output() == (b"250 2.0.0 Ok\r\n250 2.0.0 Ok: queued as TEST\r\n")
    chunk, message = d.events[-2:]
    assert chunk == ev.BdatChunk(len(HEAD))
    # no dot-unstuffing, no end marker: a "." line and a command line
    # inside a chunk are message text (RFC 3030 2)
    assert message == ev.DataReceived(HEAD + BODY, len(HEAD + BODY), chunked=True)
    assert d.core.state is State.READY
    d.feed(b"NOOP\r\n")
    assert d.codes()[-1] == 250


@given(st.lists(st.integers(min_value=0, max_value=len(CHUNKED)), max_size=8))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    whole = ready()
    whole.feed(CHUNKED)
    split = ready()
    start = 0
    for cut in [*sorted(cuts), len(CHUNKED)]:
        if cut > start:  # b"" would say the peer closed
            split.feed(CHUNKED[start:cut])
            start = cut
    assert split.events == whole.events
    assert split.out == whole.out


def test_bdat_zero_last_ends_the_message() -> None:
    d = ready()
    d.feed(b"BDAT 3\r\nabcBDAT 0 LAST\r\n")
    assert messages(d) == [ev.DataReceived(b"abc\r\n", 5, chunked=True)]


def test_refused_bdat_octets_are_skipped_not_run() -> None:
    # RFC 3030 2 needs RCPT first; the chunk's octets are thrown away, so
    # the QUIT inside it is no command
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL)
    d.feed(b"BDAT 6 LAST\r\nQUIT\r\n")
    d.feed(b"NOOP\r\n")
    assert d.codes() == [220, 250, 250, 503, 250]
    assert not d.core.is_closed
    assert b"503 5.5.1 Error: need RCPT command" in d.out


def test_refused_bdat_skips_octets_that_arrive_later() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(b"BDAT 10\r\n")
    d.feed(b"RSET\r\n")  # 6 of the 10 octets
    d.feed(b"QUIT" + b"NOOP\r\n")
    assert d.codes() == [220, 250, 503, 250]


def test_only_bdat_rset_noop_quit_between_chunks() -> None:
    d = ready()
    d.feed(b"BDAT 3\r\nabc")
    for line in (b"DATA", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>"):
        d.feed(line + b"\r\n")
    d.feed(b"NOOP\r\n")
    assert d.codes() == [250, 503, 503, 503, 250]
    assert d.out.count(r.IN_BDAT.to_bytes()) == 3
    assert d.core.state is State.BDAT
    d.feed(b"RSET\r\n")
    assert d.core.state is State.READY
    d.feed(b"BDAT 3 LAST\r\nxyz")
    assert d.codes()[-1] == 503
    assert messages(d) == []


def test_data_then_bdat_is_out_of_order() -> None:
    d = ready()
    d.feed(b"DATA\r\n")
    d.feed(b"BDAT 4\r\nabcd")  # message text of the DATA transaction
    assert d.core.state is State.DATA
    d.feed(b"\r\n.\r\n")
    assert messages(d) == [ev.DataReceived(b"BDAT 4\r\nabcd\r\n", 14)]


@pytest.mark.parametrize(
    "line",
    [
        b"BDAT",
        b"BDAT x",
        b"BDAT -1",
        b"BDAT 5 FIRST",
        b"BDAT 5 LAST more",
        b"BDAT " + b"9" * 21,
        b"BDAT \xd9\xa3",  # a non-ASCII digit
    ],
)
def test_bdat_without_a_valid_count_ends_the_session(line: bytes) -> None:
    # nothing tells how many octets to skip, so none may be read as commands
    d = ready()
    d.feed(line + b"\r\nRSET\r\n")
    assert d.codes() == [501]
    assert b"501 5.5.4 Syntax: BDAT count [LAST]\r\n" in d.out
    assert d.core.is_closed


def test_bdat_after_helo_is_not_offered() -> None:
    d = Driver()
    d.feed(b"HELO client.example.org\r\n")
    d.feed(MAIL)
    d.feed(RCPT)
    d.feed(b"BDAT 6 LAST\r\n")
    d.feed(b"QUIT\r\n")
    d.feed(b"NOOP\r\n")
    assert d.codes() == [220, 250, 250, 250, 502, 250]


def test_issue_011_size_over_chunks() -> None:
    # RFC 1870 6.3: too big is refused once, after the LAST chunk; what
    # is past the limit is not kept
    d = ready(max_message_bytes=10)
    d.feed(b"BDAT 8\r\n12345678BDAT 8\r\n12345678")
    assert d.core._chunks is not None
    assert len(d.core._chunks.message) == 0
    d.feed(b"BDAT 2 LAST\r\nxx")
    assert d.codes() == [250, 250, 552]
    assert messages(d) == []
    refused = d.events[-1]
    assert isinstance(refused, ev.Refused)
    assert (refused.verb, refused.in_data) == ("BDAT", True)
    d.feed(MAIL)
    assert d.codes()[-1] == 250


def test_issue_005_nul_in_chunks() -> None:
    d = ready()
    d.feed(b"BDAT 4 LAST\r\na\x00b\n")
    assert d.codes() == [550]
    assert messages(d) == []


def test_a_refused_chunk_ends_the_transaction() -> None:
    def refuse_chunks(event: ev.Event) -> r.Reply:
        if isinstance(event, ev.BdatChunk):
            return r.Reply.of(452, "4.3.1", "Insufficient system storage")
        from .server_driver import accept_all

        return accept_all(event)

    d = ready(responder=refuse_chunks)
    d.feed(b"BDAT 3\r\nabcBDAT 3 LAST\r\nxyz")
    assert d.codes() == [452, 503]
    assert messages(d) == []
    assert d.core.state is State.READY


# the collector's line ends ---------------------------------------------


def collect(*chunks: bytes, max_bytes: int = 0) -> ChunkCollector:
    collector = ChunkCollector(max_bytes)
    for chunk in chunks:
        collector.feed(chunk)
    collector.finish()
    return collector


def test_line_ends_are_made_as_data_makes_them() -> None:
    found = collect(b"a\r\nb\nc\rd\r\n")
    assert found.message == b"a\r\nb\r\nc d\r\n"
    assert found.has_bare_lf


def test_a_crlf_split_between_chunks_stays_one_line_end() -> None:
    found = collect(b"a\r", b"\nb\r", b"c\r")
    assert found.message == b"a\r\nb c \r\n"
    assert not found.has_bare_lf


def test_a_final_line_end_is_added() -> None:
    assert collect(b"no newline").message == b"no newline\r\n"
    assert collect(b"").message == b""
    assert collect(b"x\r\n").size == 3
