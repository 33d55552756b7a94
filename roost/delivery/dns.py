"""Next-hop resolution for outbound mail: MX, then A/AAAA (RFC 5321 5.1).

`MxResolver(settings).resolve_next_hops(domain)` answers the list of
hosts to try, best first, each with its addresses. Failures raise
`DnsError`, which says whether the recipients should bounce (the
domain does not exist, or says it takes no mail) or be deferred (the
resolver failed or timed out), with the enhanced status code to use.

dnspython's asyncio resolver does the queries, so nothing here blocks
the event loop; the system resolver configuration (/etc/resolv.conf)
is read once, in a thread, on first use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.resolver

from roost.config import parse_resolver

# RFC 3463 / RFC 7505 status codes decided here.
DSN_NO_SUCH_DOMAIN = "5.1.2"
DSN_NULL_MX = "5.1.10"
DSN_NO_ROUTE = "5.4.4"
DSN_DNS_TEMPORARY = "4.4.3"
DSN_BAD_DOMAIN_SYNTAX = "5.1.2"

# How long one name may take across all its retries. Postfix leaves
# this to the system resolver (RES_RETRY x RES_TIMEOUT, about 10 s).
DEFAULT_LIFETIME_S = 10.0


class ResolverSettings(Protocol):
    @property
    def dns_resolver(self) -> list[str]: ...


class DnsError(Exception):
    """A lookup that yields no next hop.

    `is_permanent` tells the caller to bounce (else defer); `dsn` is
    the enhanced status code; `text` is the log/DSN wording, postfix's
    where postfix has one.
    """

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text

    @property
    def is_permanent(self) -> bool:
        return self.dsn.startswith("5")


@dataclass(frozen=True, slots=True)
class Host:
    """One host to try: its name, MX preference and addresses."""

    name: str
    preference: int
    addresses: tuple[str, ...]


def to_ascii_domain(domain: str) -> str:
    """The A-label (IDNA) form of a domain, lower case, no final dot
    (RFC 5890); raises DnsError 5.1.2 when it is no valid name."""
    try:
        name = dns.name.from_text(domain.rstrip("."))
    except (dns.exception.DNSException, UnicodeError, ValueError):
        raise DnsError(DSN_BAD_DOMAIN_SYNTAX, "bad domain name syntax") from None
    return name.to_text(omit_final_dot=True).lower()


def _ip_literal(host: str) -> str | None:
    text = host[5:] if host.lower().startswith("ipv6:") else host
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class LazyResolver:
    """A dnspython resolver for `settings.dns_resolver`, made on first use.

    Empty `dns_resolver` means the system's resolvers; reading
    /etc/resolv.conf is blocking, so the resolver is built in a thread.
    """

    def __init__(
        self, settings: ResolverSettings, lifetime_s: float | None = None
    ) -> None:
        self._servers = [parse_resolver(item) for item in settings.dns_resolver]
        self._lifetime_s = lifetime_s
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dns.asyncresolver.Resolver:
        async with self._lock:
            if self._resolver is None:
                self._resolver = await asyncio.to_thread(self._make)
            return self._resolver

    def _make(self) -> dns.asyncresolver.Resolver:
        if not self._servers:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port)
                for address, port in self._servers
            ]
        if self._lifetime_s is not None:
            resolver.lifetime = self._lifetime_s
        return resolver


class MxResolver:
    """MX and address lookups against the configured resolver.

    `settings.dns_resolver` lists "ip", "ip:port" or "[v6]:port"
    entries; empty means the system's resolver. `rng` orders MX hosts
    of equal preference (RFC 5321 5.1: randomly); pass a seeded one in
    tests.
    """

    def __init__(
        self,
        settings: ResolverSettings,
        *,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        rng: random.Random | None = None,
    ) -> None:
        self._resolver = LazyResolver(settings, lifetime_s)
        self._rng = rng or random.Random()  # noqa: S311 - MX order, not crypto

    async def resolve_next_hops(self, domain: str) -> list[Host]:
        """The hosts that take mail for `domain`, in the order to try.

        MX hosts by preference, equal preferences shuffled; without MX
        records the domain itself (RFC 5321 5.1, the implicit MX).
        Raises DnsError: 5.1.2 NXDOMAIN, 5.1.10 null MX (RFC 7505),
        5.4.4 no address at all, 4.4.3 resolver failure or timeout.
        """
        name = to_ascii_domain(domain)
        literal = _ip_literal(name)
        if literal is not None:
            return [Host(name, 0, (literal,))]

        records = await self._query(name, "MX", domain=name)
        if records is None:
            return await self._implicit_mx(name)
        exchanges = _exchanges(records)
        return await self._resolve_exchanges(exchanges)

    async def resolve_host(self, host: str) -> Host:
        """One host by name (no MX lookup: relayhost `[host]`).

        Raises DnsError like resolve_next_hops."""
        literal = _ip_literal(host)
        if literal is not None:
            return Host(host, 0, (literal,))
        name = to_ascii_domain(host)
        addresses = await self._addresses(name)
        if not addresses:
            text = f"Host or domain name not found. name={name}: no address"
            raise DnsError(DSN_NO_ROUTE, text)
        return Host(name, 0, addresses)

    async def _implicit_mx(self, name: str) -> list[Host]:
        addresses = await self._addresses(name)
        if not addresses:
            text = f"Host or domain name not found. name={name}: no MX or address"
            raise DnsError(DSN_NO_ROUTE, text)
        return [Host(name, 0, addresses)]

    async def _resolve_exchanges(self, exchanges: list[tuple[int, str]]) -> list[Host]:
        ordered = self._order(exchanges)
        lookups = [self._addresses_or_error(name) for _pref, name in ordered]
        found = await asyncio.gather(*lookups)

        hosts: list[Host] = []
        temporary: DnsError | None = None
        for (preference, name), result in zip(ordered, found, strict=True):
            if isinstance(result, DnsError):
                if not result.is_permanent:
                    temporary = result
                continue
            if result:
                hosts.append(Host(name, preference, result))
        if hosts:
            return hosts
        if temporary is not None:
            raise temporary
        raise DnsError(DSN_NO_ROUTE, "no MX host has an address")

    def _order(self, exchanges: list[tuple[int, str]]) -> list[tuple[int, str]]:
        shuffled = list(exchanges)
        self._rng.shuffle(shuffled)
        # sorted() is stable, so the shuffle survives among equals.
        return sorted(shuffled, key=lambda pair: pair[0])

    async def _addresses_or_error(self, name: str) -> tuple[str, ...] | DnsError:
        try:
            return await self._addresses(name)
        except DnsError as error:
            return error

    async def _addresses(self, name: str) -> tuple[str, ...]:
        """A then AAAA addresses of name; () when it has neither."""
        results = await asyncio.gather(
            self._query(name, "A", domain=name),
            self._query(name, "AAAA", domain=name),
            return_exceptions=True,
        )
        addresses: list[str] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            addresses.extend(record.to_text() for record in result or ())
        return tuple(addresses)

    async def _query(
        self, name: str, rdtype: str, *, domain: str
    ) -> Sequence[dns.rdata.Rdata] | None:
        """The records, or None for NOERROR with no data (NODATA)."""
        resolver = await self._resolver.get()
        qname = dns.name.from_text(name)
        try:
            answer = await resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            text = f"Host or domain name not found. name={domain} type={rdtype}"
            raise DnsError(DSN_NO_SUCH_DOMAIN, text + ": Host not found") from None
        except dns.resolver.NoAnswer:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as error:
            text = f"Host or domain name not found. name={domain} type={rdtype}"
            why = "timeout" if isinstance(error, dns.exception.Timeout) else "SERVFAIL"
            text += f": Host not found, try again ({why})"
            raise DnsError(DSN_DNS_TEMPORARY, text) from None
        except dns.exception.DNSException:
            text = f"DNS error looking up name={domain} type={rdtype}"
            raise DnsError(DSN_DNS_TEMPORARY, text) from None
        return list(answer)


def _exchanges(records: Sequence[dns.rdata.Rdata]) -> list[tuple[int, str]]:
    """(preference, host) pairs from MX records; raises DnsError 5.1.10
    for a null MX.

    RFC 7505 3: a domain with a null MX ("0 .") MUST NOT have other MX
    records; when it has, the null MX is ignored and the others used.
    """
    exchanges: list[tuple[int, str]] = []
    saw_null = False
    for record in records:
        exchange = record.exchange  # type: ignore[attr-defined]
        if exchange == dns.name.root:
            saw_null = True
            continue
        host = exchange.to_text(omit_final_dot=True).lower()
        exchanges.append((int(record.preference), host))  # type: ignore[attr-defined]
    if not exchanges and saw_null:
        text = "Domain does not accept mail (null MX, RFC 7505)"
        raise DnsError(DSN_NULL_MX, text)
    return exchanges
