"""DNS facts smtpd needs: the client's host name and mail domain checks.

`DnsChecks(settings)` asks the resolver of `settings.dns_resolver`
(empty: the system's) through dnspython's asyncio resolver, so no
lookup blocks the event loop.

- `client_hostname(ip)` is postfix's peer name: the PTR name of the
  address, kept only when that name resolves back to the same address
  (forward-confirmed); otherwise, and on any failure or timeout,
  "unknown". It goes into log lines (`host[ip]`), Received headers and
  check_client_access.
- `domain_status(domain)` is what reject_unknown_sender_domain and
  reject_unknown_recipient_domain need: MX records, else A/AAAA
  records, else the domain is unknown; a lone null MX (RFC 7505) says
  it takes no mail. Unlike roost.delivery.dns.MxResolver, which also
  resolves every MX host for delivery, this asks only whether the
  domain exists as a mail domain (postfix accepts an MX whose host
  has no address), so it costs one query in the common case.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.resolver
import dns.reversename

from roost.delivery.dns import LazyResolver, ResolverSettings
from roost.protocols.smtp.grammar import is_domain
from roost.services.policy import DomainStatus

log = logging.getLogger("roost.smtpd")

UNKNOWN = "unknown"
# One name's lookups for a mail domain check, across retries (postfix
# leaves this to the system resolver, about 10 s).
DOMAIN_LIFETIME_S = 10.0
# Each of the two lookups of a client name: the greeting waits on them.
PTR_LIFETIME_S = 3.0


class _Temporary(Exception):  # noqa: N818 (a condition, not an error)
    """The resolver failed or timed out."""


class DnsChecks:
    """Client name and mail domain lookups against one resolver."""

    def __init__(
        self,
        settings: ResolverSettings,
        *,
        domain_lifetime_s: float = DOMAIN_LIFETIME_S,
        ptr_lifetime_s: float = PTR_LIFETIME_S,
    ) -> None:
        self._resolver = LazyResolver(settings)
        self._domain_lifetime_s = domain_lifetime_s
        self._ptr_lifetime_s = ptr_lifetime_s

    async def _query(
        self, name: dns.name.Name, rdtype: str, lifetime_s: float
    ) -> Sequence[dns.rdata.Rdata] | None:
        """The records; None for NXDOMAIN or no data; _Temporary when
        the resolver cannot say."""
        resolver = await self._resolver.get()
        try:
            answer = await resolver.resolve(
                name, rdtype, search=False, lifetime=lifetime_s
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as error:
            raise _Temporary(str(error)) from None
        return list(answer)

    # the client's name ---------------------------------------------------

    async def client_hostname(self, ip: str) -> str:
        """The forward-confirmed PTR name of ip, lower case, or "unknown"."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return UNKNOWN
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        try:
            return await self._confirmed_name(address)
        except _Temporary as error:
            log.info("warning: %s: hostname lookup failed: %s", ip, error)
            return UNKNOWN

    async def _confirmed_name(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> str:
        reverse = dns.reversename.from_address(str(address))
        records = await self._query(reverse, "PTR", self._ptr_lifetime_s)
        if not records:
            return UNKNOWN
        target = records[0].target  # type: ignore[attr-defined]
        name = str(target.to_text(omit_final_dot=True)).lower()
        if not _is_hostname(name):
            log.info("warning: %s: bad PTR name %r", address, name[:80])
            return UNKNOWN

        # forward-confirm: the name must lead back to the address
        rdtype = "A" if address.version == 4 else "AAAA"
        forward = await self._query(target, rdtype, self._ptr_lifetime_s)
        found = {ipaddress.ip_address(r.to_text()) for r in forward or ()}
        if address not in found:
            log.info(
                "warning: hostname %s does not resolve to address %s", name, address
            )
            return UNKNOWN
        return name

    # mail domains --------------------------------------------------------

    async def domain_status(self, domain: str) -> DomainStatus:
        """Whether domain exists as a mail domain (see the module note)."""
        try:
            name = dns.name.from_text(domain.rstrip("."))
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return DomainStatus.NOT_FOUND
        lifetime_s = self._domain_lifetime_s
        try:
            mx = await self._query(name, "MX", lifetime_s)
            if mx:
                return _mx_status(mx)
            found = await asyncio.gather(
                self._query(name, "A", lifetime_s),
                self._query(name, "AAAA", lifetime_s),
                return_exceptions=True,
            )
        except _Temporary:
            return DomainStatus.TEMPORARY
        if any(isinstance(r, Sequence) and r for r in found):
            return DomainStatus.OK
        if any(isinstance(r, BaseException) for r in found):
            return DomainStatus.TEMPORARY
        return DomainStatus.NOT_FOUND


def _mx_status(records: Sequence[dns.rdata.Rdata]) -> DomainStatus:
    # RFC 7505 3: a null MX "0 ." alone says the domain takes no mail;
    # beside other MX records it is ignored
    hosts = [r.exchange for r in records]  # type: ignore[attr-defined]
    if all(host == dns.name.root for host in hosts):
        return DomainStatus.NULL_MX
    return DomainStatus.OK


def _is_hostname(name: str) -> bool:
    # postfix valid_hostname: LDH labels, not all digits (no address)
    if not name.isascii() or not is_domain(name):
        return False
    return not name.replace(".", "").isdigit()
