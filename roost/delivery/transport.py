"""Choosing the next hop of a recipient: transport_maps, then the
local domains, then relayhost, then the recipient's domain by MX.

A `NextHop` names the transport (smtp, lmtp, local, error, retry) and
where it goes; recipients of one message with equal next hops travel
in one delivery attempt. `Router.route(address)` is a pure lookup;
the tables are read by `Router.load` / `reload_if_changed`, which do
disk I/O and belong in a thread.

Table syntax is postfix's transport(5), one `pattern result` per line:

    example.com      smtp:[mail.example.com]:2525
    .example.com     smtp:relay.example.com
    user@example.org lmtp:unix:/run/dovecot/lmtp
    bad.example      error:mail for this domain is not accepted
    example.net      :[10.0.0.1]      (default transport, this hop)
    *                smtp:[fallback.example]

Patterns are tried in the order: the full address, the address without
its extension, the domain, each parent domain as `.parent`, then `*`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from roost.config import table_path
from roost.delivery.dns import DnsError, to_ascii_domain

SMTP_PORT = 25
LMTP_PORT = 24
TRANSPORTS = frozenset({"smtp", "lmtp", "local", "error", "retry"})


class RouterSettings(Protocol):
    @property
    def relayhost(self) -> str: ...
    @property
    def transport_maps(self) -> list[str]: ...
    @property
    def mydestination(self) -> list[str]: ...
    @property
    def virtual_mailbox_domains(self) -> list[str]: ...
    @property
    def recipient_delimiter(self) -> str: ...


class TableError(ValueError):
    """A bad line in a transport table; the message has file:line."""


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where a recipient goes.

    `host` is a domain (MX lookup when `mx_lookup`) or a host name or
    IP address (no MX lookup: postfix's `[host]`); `unix_path` is set
    for `lmtp:unix:/path`; `text` carries the reason of error:/retry:.
    """

    transport: str
    host: str = ""
    port: int | None = None
    mx_lookup: bool = True
    unix_path: str = ""
    text: str = ""

    @property
    def destination(self) -> str:
        """The next hop as postfix writes it, e.g. `[10.0.0.1]:2525`;
        connection reuse and concurrency limits are kept per value."""
        if self.unix_path:
            return f"unix:{self.unix_path}"
        host = self.host if self.mx_lookup else f"[{self.host}]"
        return f"{host}:{self.port}" if self.port else host

    def __str__(self) -> str:
        if self.transport in ("error", "retry"):
            return f"{self.transport}:{self.text}"
        return f"{self.transport}:{self.destination}"


def parse_nexthop(transport: str, spec: str, domain: str) -> NextHop:
    """A NextHop from `transport` and postfix's nexthop syntax.

    `spec` is empty (the recipient `domain`), `host`, `host:port`,
    `[host]`, `[host]:port`, `[ipv6:addr]:port`, or for lmtp also
    `inet:host:port` and `unix:/path`. Raises ValueError.
    """
    transport = transport.lower()
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}")
    if transport in ("error", "retry"):
        return NextHop(transport, text=spec or "delivery not possible")
    if transport == "local":
        return NextHop("local", host=domain, mx_lookup=False)

    is_lmtp = transport == "lmtp"
    if is_lmtp and spec.startswith("unix:"):
        return NextHop("lmtp", unix_path=spec[5:], mx_lookup=False)
    if is_lmtp and spec.startswith("inet:"):
        spec = spec[5:]
    host, port, bracketed = _split_host_port(spec or domain)
    # LMTP goes to a host, never by MX (RFC 2033 is for local hops).
    return NextHop(transport, host, port, mx_lookup=not bracketed and not is_lmtp)


_HOST_PORT = re.compile(r"^(?:\[([^\]]+)\]|([^\[\]:\s]+))(?::(\d{1,5}))?$")


def _split_host_port(text: str) -> tuple[str, int | None, bool]:
    match = _HOST_PORT.match(text)
    if match is None:
        bare = _bare_ipv6(text)
        if bare is None:
            raise ValueError(f"bad next hop {text!r}")
        return bare, None, True
    inner, plain, port_text = match.groups()
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"bad port in next hop {text!r}")
    if inner is not None:
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        return inner.lower(), port, True
    return plain.lower(), port, False


def _bare_ipv6(text: str) -> str | None:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class TableEntry:
    transport: str
    nexthop: str


class TransportTable:
    """One transport_maps file, read at construction (blocking)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mtime_ns = path.stat().st_mtime_ns
        self.entries = _parse_table(path, path.read_text("utf-8"))

    def is_stale(self) -> bool:
        try:
            return self.path.stat().st_mtime_ns != self.mtime_ns
        except FileNotFoundError:
            return True

    def lookup(self, keys: Iterable[str]) -> TableEntry | None:
        for key in keys:
            entry = self.entries.get(key)
            if entry is not None:
                return entry
        return None


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with postfix's continuation rule: a line that starts with
    white space continues the previous one; # lines are comments."""
    current: tuple[int, str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and current is not None:
            current = (current[0], current[1] + " " + stripped)
            continue
        if current is not None:
            yield current
        current = (number, stripped)
    if current is not None:
        yield current


def _parse_table(path: Path, text: str) -> dict[str, TableEntry]:
    entries: dict[str, TableEntry] = {}
    for number, line in _logical_lines(text):
        key, *rest = line.split(None, 1)
        if not rest:
            raise TableError(f"{path}:{number}: missing result for {key!r}")
        value = rest[0]
        # "transport:nexthop"; a bare word is a transport (postfix)
        transport, _, nexthop = value.partition(":")
        if transport and transport.lower() not in TRANSPORTS:
            raise TableError(f"{path}:{number}: unknown transport {transport!r}")
        entries[_table_key(key)] = TableEntry(transport.lower(), nexthop.strip())
    return entries


def _table_key(key: str) -> str:
    key = key.lower()
    if key == "*" or "@" in key:
        return key
    prefix = "." if key.startswith(".") else ""
    try:
        return prefix + to_ascii_domain(key.lstrip("."))
    except DnsError:
        return key


class Router:
    """Next-hop choice for recipient addresses, postfix's way."""

    def __init__(
        self, settings: RouterSettings, tables: Sequence[TransportTable] = ()
    ) -> None:
        self.settings = settings
        self.tables = list(tables)
        self._local = {_domain_key(d) for d in settings.mydestination}
        self._local |= {_domain_key(d) for d in settings.virtual_mailbox_domains}
        relayhost = settings.relayhost
        self._relayhost = parse_nexthop("smtp", relayhost, "") if relayhost else None

    @classmethod
    def load(cls, settings: RouterSettings) -> Router:
        """Reads transport_maps (blocking: call it in a thread).
        Raises OSError or TableError."""
        tables = [TransportTable(Path(table_path(t))) for t in settings.transport_maps]
        return cls(settings, tables)

    def is_stale(self) -> bool:
        """True when a table file changed since it was read (a cheap
        stat per table; blocking, like load)."""
        return any(table.is_stale() for table in self.tables)

    def route(self, address: str) -> NextHop:
        """The next hop for one recipient address.

        Raises ValueError when a table entry has a bad next hop."""
        local_part, _, domain = address.rpartition("@")
        domain = _domain_key(domain)
        entry = self._lookup(local_part, domain)
        if entry is not None:
            default = "local" if domain in self._local else "smtp"
            transport = entry.transport or default
            if transport == "smtp" and not entry.nexthop and self._relayhost:
                return self._relayhost
            return parse_nexthop(transport, entry.nexthop, domain)
        if domain in self._local or not domain:
            return NextHop("local", host=domain, mx_lookup=False)
        if self._relayhost is not None:
            return self._relayhost
        return NextHop("smtp", domain)

    def _lookup(self, local_part: str, domain: str) -> TableEntry | None:
        keys: list[str] = []
        if local_part:
            keys.append(f"{local_part.lower()}@{domain}")
            base = _strip_extension(local_part, self.settings.recipient_delimiter)
            if base != local_part:
                keys.append(f"{base.lower()}@{domain}")
        keys.append(domain)
        labels = domain.split(".")
        keys += ["." + ".".join(labels[i:]) for i in range(1, len(labels))]
        keys.append("*")
        for table in self.tables:
            entry = table.lookup(keys)
            if entry is not None:
                return entry
        return None


def _strip_extension(local_part: str, delimiters: str) -> str:
    for index, char in enumerate(local_part):
        if char in delimiters and index > 0:
            return local_part[:index]
    return local_part


def _domain_key(domain: str) -> str:
    try:
        return to_ascii_domain(domain) if domain else ""
    except DnsError:
        return domain.lower().rstrip(".")
