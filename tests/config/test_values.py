"""Value converters: every kind gives its type or a ValueError, nothing else."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.config import PARAMETERS, parse_network, parse_resolver, parse_time
from roost.config.values import Context, check_hostname, table_path

KINDS = sorted(
    {
        row.metadata["kind"].name: row.metadata["kind"] for row in PARAMETERS.values()
    }.items()
)


@pytest.mark.parametrize(("name", "kind"), KINDS, ids=[n for n, _ in KINDS])
@settings(max_examples=150)
@given(text=st.text(max_size=60))
def test_kind_returns_or_raises_value_error(name: str, kind: object, text: str) -> None:
    try:
        kind.convert(text, Context(Path("/base")))  # type: ignore[attr-defined]
    except ValueError:
        return


@pytest.mark.parametrize(
    ("text", "unit", "seconds"),
    [
        ("0", "s", 0),
        ("45", "s", 45),
        ("2m", "s", 120),
        ("3H", "s", 10800),
        ("5d", "s", 432000),
        ("1w", "s", 604800),
        ("5", "d", 432000),
        ("4", "h", 14400),
    ],
)
def test_parse_time(text: str, unit: str, seconds: int) -> None:
    assert parse_time(text, unit) == seconds


@pytest.mark.parametrize("text", ["", "5 d", "-1s", "1.5h", "1y", "s", "1ss"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad time value"):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "cidr"),
    [
        ("[::1]/128", "::1/128"),
        ("[::1]", "::1/128"),
        ("::1/128", "::1/128"),
        ("[2001:DB8::]/32", "2001:db8::/32"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.1", "192.0.2.1/32"),
    ],
)
def test_parse_network(text: str, cidr: str) -> None:
    assert parse_network(text) == cidr


@pytest.mark.parametrize(
    ("text", "result"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_parse_resolver(text: str, result: tuple[str, int]) -> None:
    assert parse_resolver(text) == result


@pytest.mark.parametrize("text", ["127.0.0.1:", "127.0.0.1:x", "[::1]:70000", "x"])
def test_parse_resolver_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad resolver"):
        parse_resolver(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [("Example.TEST.", "example.test"), ("bücher.example", "xn--bcher-kva.example")],
)
def test_check_hostname(text: str, name: str) -> None:
    assert check_hostname(text) == name


@pytest.mark.parametrize("text", ["", ".", "a..b", "-a.test", "a_b.test", "a" * 64])
def test_check_hostname_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bad host name"):
        check_hostname(text)


def test_table_path() -> None:
    assert table_path("hash:/etc/aliases") == "/etc/aliases"
    assert table_path("/etc/aliases") == "/etc/aliases"
    assert table_path("texthash:/x") == "/x"
    with pytest.raises(ValueError, match="unsupported"):
        table_path("mysql:/etc/x.cf")
    with pytest.raises(ValueError, match="missing file name"):
        table_path("hash:")
