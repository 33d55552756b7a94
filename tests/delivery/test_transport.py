"""Next-hop choice: transport_maps, local domains, relayhost, MX."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from roost.config import Settings
from roost.delivery.transport import NextHop, Router, TableError, parse_nexthop


@pytest.mark.parametrize(
    ("transport", "spec", "expected"),
    [
        ("smtp", "", NextHop("smtp", "example.com")),
        ("smtp", "relay.example", NextHop("smtp", "relay.example")),
        ("smtp", "relay.example:2525", NextHop("smtp", "relay.example", 2525)),
        ("smtp", "[relay.example]", NextHop("smtp", "relay.example", None, False)),
        ("smtp", "[10.0.0.1]:587", NextHop("smtp", "10.0.0.1", 587, False)),
        ("smtp", "[ipv6:2001:db8::1]:25", NextHop("smtp", "2001:db8::1", 25, False)),
        ("smtp", "[::1]:2525", NextHop("smtp", "::1", 2525, False)),
        ("lmtp", "[127.0.0.1]:24", NextHop("lmtp", "127.0.0.1", 24, False)),
        ("lmtp", "inet:localhost:24", NextHop("lmtp", "localhost", 24, False)),
        (
            "lmtp",
            "unix:/run/lmtp",
            NextHop("lmtp", mx_lookup=False, unix_path="/run/lmtp"),
        ),
        ("error", "no mail here", NextHop("error", text="no mail here")),
        ("local", "", NextHop("local", "example.com", mx_lookup=False)),
    ],
)
def test_parse_nexthop(transport: str, spec: str, expected: NextHop) -> None:
    assert parse_nexthop(transport, spec, "example.com") == expected


@pytest.mark.parametrize("spec", ["[unclosed", "host:99999", "a b"])
def test_parse_nexthop_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="next hop"):
        parse_nexthop("smtp", spec, "example.com")


def test_destination_is_postfix_spelling() -> None:
    assert str(parse_nexthop("smtp", "[10.0.0.1]:587", "x")) == "smtp:[10.0.0.1]:587"
    assert str(parse_nexthop("smtp", "", "example.com")) == "smtp:example.com"


def test_default_route_is_mx_of_the_domain(
    make_settings: Callable[..., Settings],
) -> None:
    router = Router(make_settings())
    assert router.route("bo@Example.COM") == NextHop("smtp", "example.com")
    assert router.route("bo@roost.example.org").transport == "local"
    # IDN: U-label and A-label route alike (case 030)
    assert router.route("bo@bücher.example").host == "xn--bcher-kva.example"


def test_relayhost_brackets_skip_mx(make_settings: Callable[..., Settings]) -> None:
    router = Router(make_settings(relayhost="[smart.example]:2525"))
    assert router.route("bo@example.com") == NextHop(
        "smtp", "smart.example", 2525, False
    )
    assert router.route("bo@roost.example.org").transport == "local"
    router = Router(make_settings(relayhost="smart.example"))
    assert router.route("bo@example.com") == NextHop("smtp", "smart.example")


def test_transport_maps(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    table = tmp_path / "transport"
    table.write_text(
        "# comment\n"
        "example.com      smtp:[mail.example.com]:2525\n"
        ".example.com     smtp:relay.example.com\n"
        "bo+x@example.org lmtp:unix:/run/lmtp\n"
        "cy@example.org   error:cy has left\n"
        "bad.example      error:mail for this domain\n"
        "  is not accepted\n"
        "gw.example       :[10.0.0.1]\n"
        "keep.example     smtp:\n"
        "roost.example.org smtp:[other.example]\n"
        "*                smtp:[fallback.example]\n"
    )
    router = Router.load(
        make_settings(transport_maps=f"hash:{table}", relayhost="[r.example]")
    )
    assert router.route("a@example.com") == NextHop(
        "smtp", "mail.example.com", 2525, False
    )
    assert router.route("a@sub.example.com") == NextHop("smtp", "relay.example.com")
    assert router.route("a@deep.sub.example.com").host == "relay.example.com"
    # user+ext@ falls back to user@ and the other way round (postfix transport(5))
    assert router.route("bo+x@example.org").unix_path == "/run/lmtp"
    assert router.route("cy+y@example.org") == NextHop("error", text="cy has left")
    assert router.route("z@bad.example").text == "mail for this domain is not accepted"
    assert router.route("z@gw.example") == NextHop("smtp", "10.0.0.1", None, False)
    # smtp with no next hop: relayhost still applies (postfix)
    assert router.route("z@keep.example") == NextHop("smtp", "r.example", None, False)
    # transport_maps overrides local delivery
    assert router.route("z@roost.example.org").host == "other.example"
    assert router.route("z@elsewhere.example").host == "fallback.example"
    assert not router.is_stale()
    table.write_text("example.com smtp:[changed.example]\n")
    os.utime(table, ns=(1, 1))
    assert router.is_stale()


def test_transport_table_errors(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    table = tmp_path / "transport"
    table.write_text("example.com\n")
    with pytest.raises(TableError, match=r"transport:1:"):
        Router.load(make_settings(transport_maps=str(table)))
    table.write_text("ok.example smtp:\nexample.com pigeon:coop\n")
    with pytest.raises(TableError, match=r"transport:2: unknown transport"):
        Router.load(make_settings(transport_maps=str(table)))
