"""MX resolution against a real resolver (unbound on loopback)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from roost.config import Settings
from roost.delivery.dns import DnsError, Host, MxResolver, to_ascii_domain
from tests.support.dns_server import DnsServer, free_udp_port


@pytest.fixture
def resolver(
    dns_server: DnsServer, make_settings: Callable[..., Settings]
) -> MxResolver:
    settings = make_settings(dns_resolver=dns_server.setting)
    return MxResolver(settings, lifetime_s=3.0, rng=random.Random(7))


def hops(resolver: MxResolver, domain: str) -> list[Host]:
    return asyncio.run(resolver.resolve_next_hops(domain))


def failure(resolver: MxResolver, domain: str) -> DnsError:
    with pytest.raises(DnsError) as caught:
        hops(resolver, domain)
    return caught.value


def test_mx_in_preference_order(resolver: MxResolver) -> None:
    assert hops(resolver, "example.test") == [
        Host("mx1.example.test", 10, ("127.0.0.1",)),
        Host("mx2.example.test", 20, ("::1",)),
    ]


def test_equal_preferences_are_shuffled(
    dns_server: DnsServer, make_settings: Callable[..., Settings]
) -> None:
    # RFC 5321 5.1: hosts of equal preference are tried in random order
    settings = make_settings(dns_resolver=dns_server.setting)
    orders = set()
    for seed in range(12):
        resolver = MxResolver(settings, rng=random.Random(seed))
        found = hops(resolver, "equal.example.test")
        assert found[0].name == "first.equal.example.test"
        assert [h.preference for h in found] == [5, 10, 10, 10]
        orders.add(tuple(h.name for h in found[1:]))
    assert len(orders) > 1


def test_no_mx_falls_back_to_address(resolver: MxResolver) -> None:
    # RFC 5321 5.1: the implicit MX, preference 0, A and AAAA
    assert hops(resolver, "implicit.example.test") == [
        Host("implicit.example.test", 0, ("127.0.0.1", "::1"))
    ]


def test_null_mx_is_permanent_5_1_10(resolver: MxResolver) -> None:
    error = failure(resolver, "nullmx.example.test")
    assert error.is_permanent
    assert error.dsn == "5.1.10"  # RFC 7505 3


def test_nxdomain_is_permanent_5_1_2(resolver: MxResolver) -> None:
    error = failure(resolver, "nope.example.test")
    assert error.is_permanent
    assert error.dsn == "5.1.2"


def test_servfail_is_temporary_4_4_3(resolver: MxResolver) -> None:
    error = failure(resolver, "fail.test")
    assert not error.is_permanent
    assert error.dsn == "4.4.3"
    assert "SERVFAIL" in error.text


def test_timeout_is_temporary_4_4_3(
    dns_server: DnsServer, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(dns_resolver=dns_server.setting)
    resolver = MxResolver(settings, lifetime_s=0.5)
    error = failure(resolver, "host.slow.test")
    assert error.dsn == "4.4.3"
    assert "timeout" in error.text


def test_silent_resolver_is_temporary() -> None:
    port = free_udp_port()
    settings = SimpleNamespace(dns_resolver=[f"127.0.0.1:{port}"])
    resolver = MxResolver(settings, lifetime_s=0.3)
    assert failure(resolver, "example.test").dsn == "4.4.3"


def test_domain_that_is_a_cname(resolver: MxResolver) -> None:
    assert [h.name for h in hops(resolver, "cname.example.test")] == [
        "mx1.example.test",
        "mx2.example.test",
    ]


def test_mx_naming_a_cname_is_followed(resolver: MxResolver) -> None:
    assert hops(resolver, "mxalias.example.test") == [
        Host("alias.example.test", 10, ("127.0.0.1",))
    ]


def test_no_mx_and_no_address_is_permanent(resolver: MxResolver) -> None:
    error = failure(resolver, "nodata.example.test")
    assert error.is_permanent
    assert error.dsn == "5.4.4"


def test_mx_hosts_without_address(resolver: MxResolver) -> None:
    assert failure(resolver, "mxnx.example.test").dsn == "5.4.4"
    # the only MX host's lookup fails temporarily: defer, never bounce
    assert failure(resolver, "mxfail.example.test").dsn == "4.4.3"
    # a working MX host is used when another one fails
    assert [h.name for h in hops(resolver, "mxhalf.example.test")] == [
        "mx3.example.test"
    ]


def test_idn_domain_is_looked_up_as_a_label(resolver: MxResolver) -> None:
    # RFC 5891: U-label and A-label name the same domain (case 030)
    assert to_ascii_domain("Bücher.Example.Test.") == "xn--bcher-kva.example.test"
    assert [h.name for h in hops(resolver, "bücher.example.test")] == [
        "mx1.example.test"
    ]


def test_address_literal_and_host(resolver: MxResolver) -> None:
    assert hops(resolver, "127.0.0.9") == [Host("127.0.0.9", 0, ("127.0.0.9",))]
    host = asyncio.run(resolver.resolve_host("two.example.test"))
    assert host.addresses == ("127.0.0.1", "::1")
    with pytest.raises(DnsError):
        asyncio.run(resolver.resolve_host("nodata.example.test"))
