"""MIME parsing: offsets, limits (case 020), addresses, sections."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from roost.mailstore import mime


def test_to_crlf_and_back() -> None:
    assert mime.to_crlf(b"a\nb\r\nc") == b"a\r\nb\r\nc"
    assert mime.to_lf(b"a\r\nb\rc\r\n") == b"a\nb\rc\n"
    # a bare CR stays; CR CR LF keeps its first CR (case 026)
    assert mime.to_crlf(b"a\rb\r\r\nc\n\r") == b"a\rb\r\r\nc\r\n\r"


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b"\r", b"\n", b"x"])).map(b"".join)
)
def test_to_crlf_is_the_line_end_rule(data: bytes) -> None:
    # the rule as one regular expression: every LF, with the CR before
    # it if any, becomes CRLF; the fast form must give the same octets
    expected = re.sub(rb"\r?\n", b"\r\n", data)
    assert mime.to_crlf(data) == expected
    assert mime.crlf_size(data) == len(expected)


def test_nested_message_rfc822() -> None:
    data = mime.to_crlf(
        b"Content-Type: multipart/mixed; boundary=o\n\n--o\n"
        b"Content-Type: message/rfc822\n\nSubject: inner\n\nhello\n--o--\n"
    )
    root = mime.parse(data)
    inner = root.children[0]
    assert inner.message is not None
    assert inner.message.header("Subject") == b"inner"
    body = data[inner.message.body_start : inner.message.end]
    assert body == b"hello"
    assert mime.find_part(root, (1, 1)) is inner.message
    assert mime.find_part(root, (2,)) is None


def test_depth_limit_makes_an_opaque_leaf() -> None:
    depth = mime.MAX_DEPTH + 5
    lines = [b"Content-Type: multipart/mixed; boundary=b0", b""]
    for level in range(1, depth):
        lines += [
            b"--b%d" % (level - 1),
            b"Content-Type: multipart/mixed; boundary=b%d" % level,
            b"",
        ]
    lines += [b"--b%d" % (depth - 1), b"", b"leaf"]
    root = mime.parse(b"\r\n".join(lines))
    parts = mime.iter_parts(root)
    assert len(parts) == mime.MAX_DEPTH + 1
    assert parts[-1].is_opaque


def test_part_limit() -> None:
    body = b"".join(b"--p\r\n\r\nx\r\n" for _ in range(mime.MAX_PARTS + 50))
    data = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" + body + b"--p--\r\n"
    root = mime.parse(data)
    assert len(mime.iter_parts(root)) <= mime.MAX_PARTS + 1
    assert root.children[-1].is_opaque


def test_missing_close_delimiter_ends_at_message_end() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
        b"--x\r\n\r\none\r\n--x\r\n\r\ntwo"
    )
    root = mime.parse(data)
    assert [data[p.body_start : p.end] for p in root.children] == [b"one", b"two"]


def test_addresses_and_groups() -> None:
    parsed = mime.parse_addresses(
        b'"Doe, John" <john@example.org>, undisclosed:;, x@y (comment), <@r:a@b>'
    )
    assert parsed[0] == mime.Address(b"Doe, John", None, b"john", b"example.org")
    assert parsed[1] == mime.Address(None, None, b"undisclosed", None)
    assert parsed[2] == mime.Address(None, None, None, None)
    assert parsed[3] == mime.Address(None, None, b"x", b"y")
    assert parsed[4] == mime.Address(None, b"@r", b"a", b"b")


def test_body_lines_count_last_line_without_newline() -> None:
    data = b"Subject: x\r\n\r\na\r\nb"
    root = mime.parse(data)
    assert mime.body_lines(data, root) == 2


@given(
    st.binary(max_size=300)
    | st.lists(st.sampled_from([b"\r\n", b"a: b", b"\n", b"x"])).map(b"".join)
)
def test_top_level_has_the_offsets_of_the_parsed_root(data: bytes) -> None:
    # BODY[], BODY[HEADER], BODY[TEXT] are served from top_level (no MIME walk)
    top, root = mime.top_level(data), mime.parse(data)
    assert (top.start, top.body_start, top.end) == (
        root.start,
        root.body_start,
        root.end,
    )
