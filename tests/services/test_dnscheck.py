"""DnsChecks against a real resolver on loopback (unbound, tests/support).

Client addresses come from 240.0.0.0/4 and 100::/64 (reserved and
discard-only): unbound serves our reverse zones for them, while the
documentation ranges and 127/8 are its own built-in local zones. The
addresses are only data in a zone; every packet goes to unbound on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from roost.config import from_values
from roost.services.dnscheck import DnsChecks
from roost.services.policy import DomainStatus
from roost.services.smtpd import SmtpService
from tests.support.dns_server import TEST_ZONES, DnsServer, free_udp_port
from tests.support.dns_server import running_resolver as run_unbound

from .smtpd_fixtures import FakeRecipients, FakeSpool, FakeUsers

REVERSE_V4 = """\
7 IN PTR mx.rev.test.
; the name leads elsewhere: not forward-confirmed
8 IN PTR other.rev.test.
; the name does not exist
9 IN PTR nowhere.rev.test.
; the forward lookup times out (slow.test never answers)
10 IN PTR host.slow.test.
; not a host name
11 IN PTR bad_name.rev.test.
12 IN PTR 240.0.0.12.
; the name is a CNAME to the confirmed host
13 IN PTR www.rev.test.
"""
REVERSE_V6 = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0 IN PTR mx.rev.test.\n"
REV_TEST = """\
mx IN A 240.0.0.7
mx IN AAAA 100::7
other IN A 240.0.0.1
bad_name IN A 240.0.0.11
www IN CNAME host13
host13 IN A 240.0.0.13
"""
ZONES = {
    **TEST_ZONES,
    "0.0.240.in-addr.arpa": REVERSE_V4,
    "0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.ip6.arpa": REVERSE_V6,
    "rev.test": REV_TEST,
}


@dataclass
class ResolverSettings:
    dns_resolver: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    with run_unbound(tmp_path_factory.mktemp("unbound"), ZONES) as server:
        yield server


def checks(server: DnsServer) -> DnsChecks:
    settings = ResolverSettings([server.setting])
    # short lifetimes: the slow.test cases wait for them
    return DnsChecks(settings, domain_lifetime_s=1.0, ptr_lifetime_s=1.0)


def hostname(server: DnsServer, ip: str) -> str:
    return asyncio.run(checks(server).client_hostname(ip))


@pytest.mark.parametrize(
    ("ip", "name"),
    [
        ("240.0.0.7", "mx.rev.test"),
        ("::ffff:240.0.0.7", "mx.rev.test"),  # IPv4-mapped: the IPv4 PTR
        ("100::7", "mx.rev.test"),
        ("240.0.0.13", "www.rev.test"),
        ("240.0.0.8", "unknown"),
        ("240.0.0.9", "unknown"),
        ("240.0.0.10", "unknown"),
        ("240.0.0.11", "unknown"),
        ("240.0.0.12", "unknown"),
        ("240.0.0.99", "unknown"),  # no PTR record
        ("not-an-address", "unknown"),
    ],
)
def test_client_hostname_is_forward_confirmed(
    unbound: DnsServer, ip: str, name: str
) -> None:
    assert hostname(unbound, ip) == name


def test_client_hostname_when_the_resolver_is_down() -> None:
    settings = ResolverSettings([f"127.0.0.1:{free_udp_port()}"])
    dns = DnsChecks(settings, ptr_lifetime_s=1.0)
    assert asyncio.run(dns.client_hostname("240.0.0.7")) == "unknown"


@pytest.mark.parametrize(
    ("domain", "status"),
    [
        ("example.test", DomainStatus.OK),
        ("implicit.example.test", DomainStatus.OK),  # A/AAAA, no MX
        ("alias.example.test", DomainStatus.OK),  # a CNAME
        ("xn--bcher-kva.example.test", DomainStatus.OK),
        ("bücher.example.test", DomainStatus.OK),
        # an MX whose host is missing still is an MX (postfix agrees)
        ("mxnx.example.test", DomainStatus.OK),
        ("nullmx.example.test", DomainStatus.NULL_MX),  # RFC 7505
        ("nodata.example.test", DomainStatus.NOT_FOUND),
        ("missing.example.test", DomainStatus.NOT_FOUND),  # NXDOMAIN
        ("host.fail.test", DomainStatus.TEMPORARY),  # SERVFAIL
        ("host.slow.test", DomainStatus.TEMPORARY),  # timeout
    ],
)
def test_domain_status(unbound: DnsServer, domain: str, status: DomainStatus) -> None:
    assert asyncio.run(checks(unbound).domain_status(domain)) is status


def test_smtpd_client_name(unbound: DnsServer, tmp_path: Path) -> None:
    def service(**values: str) -> SmtpService:
        base = {"myhostname": "mx.example.test", "data_directory": str(tmp_path)}
        settings = from_values({**base, "dns_resolver": unbound.setting, **values})
        return SmtpService(settings, FakeSpool(), FakeUsers(), FakeRecipients())

    def name(smtpd: SmtpService, ip: str, is_loopback: bool = False) -> str:
        conn = SimpleNamespace(peer_ip=ip, is_loopback=is_loopback)
        return asyncio.run(smtpd.client_hostname(conn))  # type: ignore[arg-type]

    smtpd = service()
    assert name(smtpd, "240.0.0.7") == "mx.rev.test"
    assert name(smtpd, "240.0.0.8") == "unknown"
    # loopback is localhost without a lookup, as postfix prints it
    assert name(smtpd, "127.0.0.1", is_loopback=True) == "localhost"
    assert name(service(smtpd_peername_lookup="no"), "240.0.0.7") == "unknown"
