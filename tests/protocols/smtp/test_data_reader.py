"""DataReader against a line-at-a-time reference (RFC 5321 4.1.1.4, 4.5.2).

The reader takes runs of lines in one slice for speed; the reference
below takes one line at a time, the plain reading of the rules in the
module note of roost.protocols.smtp.data. Both get the same bytes,
split at the same random points, and must agree after every feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.protocols.smtp.data import MAX_PARTIAL_BYTES, DataReader


@dataclass
class Reference:
    """One line per step: the rules, with no shortcut."""

    max_bytes: int
    size: int = 0
    is_too_big: bool = False
    has_nul: bool = False
    has_bare_lf: bool = False
    out: bytearray = field(default_factory=bytearray)
    at_line_start: bool = True
    prev_crlf: bool = True

    def feed(self, buf: bytearray) -> bool:
        while (nl := buf.find(b"\n")) >= 0:
            line = bytes(buf[: nl + 1])
            del buf[: nl + 1]
            if self._line(line):
                return True
        if len(buf) > MAX_PARTIAL_BYTES:
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            piece = bytes(buf[:cut])
            del buf[:cut]
            if self.at_line_start and piece.startswith(b"."):
                piece = piece[1:]
            self._text(piece)
            self.at_line_start = False
        return False

    def _line(self, line: bytes) -> bool:
        crlf = line.endswith(b"\r\n")
        body = line[:-2] if crlf else line[:-1]
        self.has_bare_lf |= not crlf
        if self.at_line_start:
            if body == b"." and crlf and self.prev_crlf:
                return True
            if body.startswith(b".") and len(body) > 1:
                body = body[1:]
        self._text(body)
        self._store(b"\r\n")
        self.prev_crlf = crlf
        self.at_line_start = True
        return False

    def _text(self, text: bytes) -> None:
        self.has_nul |= b"\x00" in text
        self._store(text.replace(b"\r", b" "))

    def _store(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.max_bytes and self.size > self.max_bytes:
            self.is_too_big = True
        if self.is_too_big:
            self.out.clear()
        else:
            self.out += chunk


def _state(reader: DataReader | Reference) -> tuple[int, bool, bool, bool, bytes]:
    message = bytes(reader.out) if isinstance(reader, Reference) else reader.message
    return (
        reader.size,
        reader.is_too_big,
        reader.has_nul,
        reader.has_bare_lf,
        message,
    )


PIECES = [
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"..",
    b"\r\n.\r\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\n.\n",
    b"\r\n..",
    b"\r\n.x",
    b"\r\n.x\r\n",
    b".\r\n",
    b"\x00",
    b"text ",
    b"MAIL FROM:<a@example.org>\r\n",
    b"x" * 700,
]

data_streams = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.binary(max_size=12),
        # long lines take the partial-line path (case 004)
        st.integers(1, 3).map(lambda k: b"y" * (k * MAX_PARTIAL_BYTES // 2 + 1)),
    ),
    max_size=60,
).map(b"".join)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@settings(max_examples=600, deadline=None)
@given(
    data=data_streams,
    cuts=st.lists(st.integers(0, 1 << 20), max_size=20),
    max_bytes=st.sampled_from([0, 1, 10, 200, 5000, 40000]),
)
def test_reader_agrees_with_reference(
    data: bytes, cuts: list[int], max_bytes: int
) -> None:
    reader, reference = DataReader(max_bytes), Reference(max_bytes)
    buf, ref_buf = bytearray(), bytearray()
    for chunk in _split(data, cuts):
        buf += chunk
        ref_buf += chunk
        done = reader.feed(buf)
        assert done == reference.feed(ref_buf)
        assert bytes(buf) == bytes(ref_buf)
        assert _state(reader) == _state(reference)
        if done:
            break


DOT_LINES = [b".", b"..", b".x", b"", b"x"]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.one_of(st.binary(max_size=30), st.sampled_from(DOT_LINES)),
        max_size=40,
    ),
    chunk=st.integers(1, 300),
)
def test_dot_stuffing_round_trip(lines: list[bytes], chunk: int) -> None:
    # Any CRLF text, stuffed as a client does (RFC 5321 4.5.2), comes
    # back unchanged, with what follows ".CRLF" left in the buffer.
    clean = [ln.replace(b"\r", b"").replace(b"\n", b"") for ln in lines]
    text = b"".join(ln + b"\r\n" for ln in clean)
    stuffed = [b"." + ln if ln.startswith(b".") else ln for ln in clean]
    wire = b"".join(ln + b"\r\n" for ln in stuffed)
    wire += b".\r\n"
    after_end = len(wire)
    wire += b"QUIT\r\n"
    reader = DataReader(0)
    buf = bytearray()
    fed = 0
    while not reader.feed(buf):
        assert fed < len(wire)
        buf += wire[fed : fed + chunk]
        fed += len(wire[fed : fed + chunk])
    assert reader.message == text
    assert reader.size == len(text)
    assert bytes(buf) == wire[after_end:fed]
    assert reader.has_nul == (b"\x00" in text)
    assert not reader.has_bare_lf
    assert not reader.is_too_big


def _message(size: int, dot_every: int) -> tuple[bytes, bytes]:
    """(wire form, expected message) of about `size` bytes of CRLF text."""
    wire, text = bytearray(), bytearray()
    n = 0
    while len(text) < size:
        line = b"line %d of the message, some words to fill it" % n
        if dot_every and n % dot_every == 0:
            line = b"." + line
            wire += b"."
        wire += line + b"\r\n"
        text += line + b"\r\n"
        n += 1
    return bytes(wire) + b".\r\n", bytes(text)


def test_100k_message_in_64k_reads() -> None:
    for dot_every in (0, 1, 7):
        wire, text = _message(100 * 1024, dot_every)
        reader = DataReader(10_240_000)
        buf = bytearray()
        results = []
        for i in range(0, len(wire), 65536):
            buf += wire[i : i + 65536]
            results.append(reader.feed(buf))
        assert results == [False, True]
        assert reader.message == text
        assert reader.size == len(text)
        assert buf == b""


def test_bare_lf_and_stray_cr_normalised_within_a_run() -> None:
    # A run of lines with one bare LF and one stray CR, then ".CRLF":
    # both are fixed as postfix's normalize does, the end still seen.
    reader = DataReader(0)
    buf = bytearray(b"a\r\nb\nc\rd\r\n..e\r\n.\r\n")
    assert reader.feed(buf)
    assert reader.message == b"a\r\nb\r\nc d\r\n.e\r\n"
    assert reader.has_bare_lf


def test_each_feed_unstuffs_every_dot_line() -> None:
    # A read that starts with a dot line, and later dot lines in it.
    reader = DataReader(0)
    buf = bytearray(b"a\r\n.")
    assert not reader.feed(buf)
    assert buf == b"."
    buf += b"b\r\n.c\r\n..\r\nd\r\n.e\r\n.\r\n"
    assert reader.feed(buf)
    assert reader.message == b"a\r\nb\r\nc\r\n.\r\nd\r\ne\r\n"


def test_dot_line_after_bare_lf_is_text() -> None:
    # <LF>.<CRLF> is not the end of data (case 001, SMTP smuggling).
    reader = DataReader(0)
    buf = bytearray(b"a\n.\r\nb\r\n.\r\n")
    assert reader.feed(buf)
    assert reader.message == b"a\r\n.\r\nb\r\n"


def test_nul_after_the_end_is_not_counted() -> None:
    reader = DataReader(0)
    buf = bytearray(b"ok\r\n.\r\n\x00junk\n")
    assert reader.feed(buf)
    assert not reader.has_nul
    assert buf == b"\x00junk\n"
