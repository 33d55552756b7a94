"""main.cf syntax: logical lines, comments, expansion, lists."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.config.syntax import (
    ConfigSyntaxError,
    expand,
    parse_lines,
    references,
    split_list,
)


def values_of(text: str) -> dict[str, str]:
    entries, errors = parse_lines(text, "main.cf")
    assert errors == []
    return {e.name: e.value for e in entries}


def test_name_value_and_whitespace_around_equals() -> None:
    assert values_of("a=1\nb   =   two words  \n") == {"a": "1", "b": "two words"}


def test_comments_whole_line_only() -> None:
    text = "# top\n   # indented comment\na = x # not a comment\n"
    assert values_of(text) == {"a": "x # not a comment"}


def test_continuation_lines_join_the_logical_line() -> None:
    text = "mydestination = a,\n    b,\n\tc\n\n# c\nother = 1\n"
    entries, _ = parse_lines(text, "main.cf")
    assert [(e.name, e.value, e.line) for e in entries] == [
        ("mydestination", "a, b, c", 1),
        ("other", "1", 6),
    ]


def test_continuation_after_comment_continues_previous_entry() -> None:
    # postfix skips comment lines even inside a continued logical line
    assert values_of("a = 1\n# note\n  2\n") == {"a": "1 2"}


def test_crlf_line_ends() -> None:
    assert values_of("a = 1\r\nb = 2\r\n") == {"a": "1", "b": "2"}


def test_later_entry_overrides_earlier() -> None:
    entries, _ = parse_lines("a = 1\na = 2\n", "f")
    assert {e.name: e.value for e in entries} == {"a": "2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  a = 1\n", "f:1: logical line must not start with whitespace"),
        ("x = 1\nfoo bar\n", "f:2: missing '=' after 'foo'"),
        ("my-name = 1\n", "f:1: bad parameter name 'my-name'"),
        ("= 1\n", "f:1: bad parameter name ''"),
    ],
)
def test_syntax_errors_carry_file_and_line(text: str, message: str) -> None:
    _, errors = parse_lines(text, "f")
    assert errors == [message]


def test_empty_value_allowed() -> None:
    assert values_of("relayhost =\n") == {"relayhost": ""}


TABLE = {"a": "A", "b": "", "ab": "AB"}


def lookup(name: str) -> str:
    if name not in TABLE:
        raise ConfigSyntaxError(f"no {name}")
    return TABLE[name]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$a", "A"),
        ("x$a.y", "xA.y"),
        ("$ab", "AB"),
        ("${a}b", "Ab"),
        ("$(a)b", "Ab"),
        ("${a?yes}", "yes"),
        ("${b?yes}", ""),
        ("${a:no}", ""),
        ("${b:no}", "no"),
        ("${a?$ab}", "AB"),
        ("${b:${a}}", "A"),
        ("$$a", "$a"),
        ("cost $ 5", "cost $ 5"),
        ("end$", "end$"),
        ("plain", "plain"),
    ],
)
def test_expand(value: str, expected: str) -> None:
    assert expand(value, lookup) == expected


@pytest.mark.parametrize("value", ["${a", "$(a", "${}", "${a!x}", "${-}"])
def test_expand_malformed(value: str) -> None:
    with pytest.raises(ConfigSyntaxError):
        expand(value, lookup)


def test_references() -> None:
    assert references("$a ${b} ${c?$d} $$e $") == {"a", "b", "c", "d"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b c,,d\n e", ["a", "b", "c", "d", "e"]),
        ("", []),
        (" , ", []),
        ("one", ["one"]),
    ],
)
def test_split_list(value: str, expected: list[str]) -> None:
    assert split_list(value) == expected


@given(st.text())
def test_parse_lines_never_raises(text: str) -> None:
    entries, errors = parse_lines(text, "f")
    for entry in entries:
        assert entry.line >= 1
    for error in errors:
        assert error.startswith("f:")


@given(st.text(alphabet="${}()?:ab x"))
def test_expand_only_raises_syntax_error(value: str) -> None:
    with contextlib.suppress(ConfigSyntaxError):
        expand(value, lambda name: name.upper())
