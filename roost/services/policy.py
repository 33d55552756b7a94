"""smtpd access policy: relay control and recipient restrictions.

Plain functions of configuration plus the facts of one RCPT, as
postfix's smtpd_relay_restrictions and smtpd_recipient_restrictions
(postfix access(5) and postconf(5)). Each list is read left to right;
the first restriction that permits or refuses ends that list. Relay
restrictions run first, then recipient restrictions; a recipient
passes only when neither list refuses it.

The relay question is "is this an authorised destination?": the
recipient's final domain (any source route is already stripped, case
008) is in mydestination, virtual_mailbox_domains or relay_domains
(subdomains included for relay_domains, as postfix's
parent_domain_matches_subdomains), and its local part holds no
sender-specified routing: `@`, `%` or `!` (the percent hack, bang
paths and quoted `"a@b"@ours` are relay attempts, issue 3).

Neither list naming reject_unauth_destination or an equivalent would
make an open relay; postfix refuses to start then. We instead act as
if reject_unauth_destination ended the recipient list, and say so
(`has_relay_guard`).
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from roost.protocols.smtp.grammar import canonical_domain
from roost.protocols.smtp.reply import Reply


class Action(Enum):
    PERMIT = "permit"
    REJECT = "reject"
    DUNNO = "dunno"


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reply: Reply | None = None
    # which restriction decided, for the log line
    restriction: str = ""


PERMIT = Verdict(Action.PERMIT)
DUNNO = Verdict(Action.DUNNO)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a restriction may look at, for one recipient."""

    client_ip: str
    client_hostname: str = "unknown"
    helo: str = ""
    sasl_username: str = ""
    sender: str = ""
    recipient: str = ""
    # None when the restriction needing it cannot be decided
    is_unknown_local: bool = False


@dataclass(frozen=True, slots=True)
class Domains:
    """The domain and network settings the policy needs."""

    mynetworks: tuple[str, ...]
    mydestination: frozenset[str]
    relay_domains: frozenset[str]
    virtual_mailbox_domains: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        mynetworks: Sequence[str],
        mydestination: Sequence[str],
        relay_domains: Sequence[str],
        virtual_mailbox_domains: Sequence[str] = (),
    ) -> Domains:
        def canon(items: Sequence[str]) -> frozenset[str]:
            return frozenset(canonical_domain(d) for d in items)

        return cls(
            tuple(mynetworks),
            canon(mydestination),
            canon(relay_domains),
            canon(virtual_mailbox_domains),
        )


# postfix's replies for each refusal (smtpd_check.c wording)
RELAY_DENIED = Reply.of(554, "5.7.1", "Relay access denied")
RELAY_DEFERRED = Reply.of(454, "4.7.1", "Relay access denied")
ACCESS_DENIED = Reply.of(554, "5.7.1", "Access denied")
ACCESS_DEFERRED = Reply.of(450, "4.7.1", "Try again later")
NON_FQDN = Reply.of(504, "5.5.2", "need fully-qualified address")
UNKNOWN_USER = Reply.of(550, "5.1.1", "User unknown in local recipient table")
CONFIG_ERROR = Reply.of(451, "4.3.5", "Server configuration error")

# restrictions that stop relaying when they come last (postfix's list)
_RELAY_GUARDS = frozenset(
    {"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"}
)
# restrictions that take a table or value as the next word
_WITH_ARGUMENT = frozenset(
    {
        "check_client_access",
        "check_helo_access",
        "check_sender_access",
        "check_recipient_access",
        "check_policy_service",
        "reject_rbl_client",
        "reject_rhsbl_sender",
        "sleep",
    }
)

Lookup = Callable[[str, Sequence[str]], str | None]


def in_networks(ip: str, networks: Sequence[str]) -> bool:
    """Whether ip lies in one of the CIDR networks (IPv4-mapped IPv6
    addresses count as their IPv4 address)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for text in networks:
        if text.startswith("["):
            # postfix writes IPv6 networks as [::1]/128
            inside, _, mask = text[1:].partition("]")
            text = inside + mask
        try:
            if addr in ipaddress.ip_network(text, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def split_recipient(address: str) -> tuple[str, str]:
    """(local part, canonical domain) of an address as smtpd keeps it."""
    local, at, domain = address.rpartition("@")
    if not at:
        return address, ""
    if local.startswith('"') and local.endswith('"'):
        local = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return local, canonical_domain(domain)


def has_sender_routing(local_part: str) -> bool:
    """Sender-specified routing in a local part (postfix's test)."""
    return any(ch in local_part for ch in "@%!")


def is_local_domain(domain: str, domains: Domains) -> bool:
    canon = canonical_domain(domain)
    return canon in domains.mydestination or canon in domains.virtual_mailbox_domains


def is_relay_domain(domain: str, domains: Domains) -> bool:
    canon = canonical_domain(domain)
    return any(canon == d or canon.endswith("." + d) for d in domains.relay_domains)


def is_auth_destination(recipient: str, domains: Domains) -> bool:
    """postfix permit_auth_destination: ours, or a relay domain, and no
    sender-specified routing in the local part."""
    local, domain = split_recipient(recipient)
    if not domain:
        # RFC 5321 4.5.1: only <Postmaster> may come without a domain
        return local.lower() == "postmaster"
    if has_sender_routing(local):
        return False
    return is_local_domain(domain, domains) or is_relay_domain(domain, domains)


def has_relay_guard(*lists: Sequence[str]) -> bool:
    """Whether some list ends relaying for strangers (see module note)."""
    return any(word.lower() in _RELAY_GUARDS for items in lists for word in items)


def evaluate(
    restrictions: Sequence[str],
    facts: Facts,
    domains: Domains,
    lookup: Lookup | None = None,
) -> Verdict:
    """Run one restriction list; PERMIT, a REJECT with its reply, or
    DUNNO when no restriction decided."""
    i = 0
    while i < len(restrictions):
        name = restrictions[i].lower()
        argument = ""
        if name in _WITH_ARGUMENT and i + 1 < len(restrictions):
            argument = restrictions[i + 1]
            i += 1
        i += 1
        verdict = _check(name, argument, facts, domains, lookup)
        if verdict.action is not Action.DUNNO:
            return Verdict(verdict.action, verdict.reply, name)
    return DUNNO


def check_recipient(
    relay_restrictions: Sequence[str],
    recipient_restrictions: Sequence[str],
    facts: Facts,
    domains: Domains,
    lookup: Lookup | None = None,
) -> Verdict:
    """Both lists for one RCPT, then the implicit guards: unknown local
    users (550 5.1.1) and the relay guard of the module note."""
    for items in (relay_restrictions, recipient_restrictions):
        verdict = evaluate(items, facts, domains, lookup)
        if verdict.action is Action.REJECT:
            return verdict
    guarded = has_relay_guard(relay_restrictions, recipient_restrictions)
    if not guarded and not _is_trusted(facts, domains):
        implicit = _unauth_destination(facts, domains, RELAY_DENIED)
        if implicit.action is Action.REJECT:
            return Verdict(Action.REJECT, implicit.reply, "implicit_relay_guard")
    if facts.is_unknown_local:
        return Verdict(Action.REJECT, UNKNOWN_USER, "local_recipient_maps")
    return PERMIT


def _is_trusted(facts: Facts, domains: Domains) -> bool:
    mine = in_networks(facts.client_ip, domains.mynetworks)
    return mine or bool(facts.sasl_username)


def _check(
    name: str,
    argument: str,
    facts: Facts,
    domains: Domains,
    lookup: Lookup | None,
) -> Verdict:
    simple = _SIMPLE.get(name)
    if simple is not None:
        return simple(facts, domains)
    if name == "check_recipient_access":
        return _access(lookup, argument, _address_keys(facts.recipient))
    if name == "check_sender_access":
        if not facts.sender:
            return _access(lookup, argument, ["<>"])
        return _access(lookup, argument, _address_keys(facts.sender))
    if name == "check_client_access":
        return _access(lookup, argument, [facts.client_ip, facts.client_hostname])
    if name == "check_helo_access":
        return _access(lookup, argument, [facts.helo.lower()])
    if name in ("reject_unauth_pipelining", "warn_if_reject", "permit_tls_clientcerts"):
        # pipelining is enforced by the protocol core itself
        return DUNNO
    return Verdict(Action.REJECT, CONFIG_ERROR)


def _permit_mynetworks(facts: Facts, domains: Domains) -> Verdict:
    return PERMIT if in_networks(facts.client_ip, domains.mynetworks) else DUNNO


def _permit_sasl(facts: Facts, domains: Domains) -> Verdict:
    return PERMIT if facts.sasl_username else DUNNO


def _permit_auth_destination(facts: Facts, domains: Domains) -> Verdict:
    return PERMIT if is_auth_destination(facts.recipient, domains) else DUNNO


def _unauth_destination(facts: Facts, domains: Domains, reply: Reply) -> Verdict:
    if is_auth_destination(facts.recipient, domains):
        return DUNNO
    return Verdict(Action.REJECT, reply)


def _non_fqdn(address: str, what: str) -> Verdict:
    _, domain = split_recipient(address)
    if "." in domain or domain.startswith("["):
        return DUNNO
    text = f"<{address}>: {what} address rejected: {NON_FQDN.lines[0]}"
    return Verdict(Action.REJECT, NON_FQDN.with_text(text))


def _non_fqdn_sender(facts: Facts, domains: Domains) -> Verdict:
    return DUNNO if not facts.sender else _non_fqdn(facts.sender, "Sender")


def _non_fqdn_recipient(facts: Facts, domains: Domains) -> Verdict:
    if facts.recipient.lower() == "postmaster":
        return DUNNO
    return _non_fqdn(facts.recipient, "Recipient")


_SIMPLE: dict[str, Callable[[Facts, Domains], Verdict]] = {
    "permit": lambda f, d: PERMIT,
    "reject": lambda f, d: Verdict(Action.REJECT, ACCESS_DENIED),
    "defer": lambda f, d: Verdict(Action.REJECT, ACCESS_DEFERRED),
    "permit_mynetworks": _permit_mynetworks,
    "permit_sasl_authenticated": _permit_sasl,
    "permit_auth_destination": _permit_auth_destination,
    "reject_unauth_destination": lambda f, d: _unauth_destination(f, d, RELAY_DENIED),
    "defer_unauth_destination": lambda f, d: _unauth_destination(f, d, RELAY_DEFERRED),
    "reject_non_fqdn_sender": _non_fqdn_sender,
    "reject_non_fqdn_recipient": _non_fqdn_recipient,
    "reject_unlisted_recipient": lambda f, d: (
        Verdict(Action.REJECT, UNKNOWN_USER) if f.is_unknown_local else DUNNO
    ),
}


def _address_keys(address: str) -> list[str]:
    """postfix access(5) lookup order for an address: the address, the
    domain and its parents (`.parent`), then `localpart@`."""
    local, domain = split_recipient(address)
    keys = [f"{local}@{domain}".lower() if domain else local.lower()]
    labels = domain.split(".") if domain else []
    for i in range(len(labels)):
        parent = ".".join(labels[i:])
        keys.append(parent if i == 0 else "." + parent)
    if domain:
        keys.append(f"{local.lower()}@")
    return keys


def _access(lookup: Lookup | None, table: str, keys: Sequence[str]) -> Verdict:
    if lookup is None:
        return Verdict(Action.REJECT, CONFIG_ERROR)
    value = lookup(table, keys)
    if value is None:
        return DUNNO
    return access_action(value)


def access_action(value: str) -> Verdict:
    """An access(5) table value as a verdict: OK / REJECT [text] /
    DEFER [text] / DUNNO / a numeric reply "550 text"."""
    word, _, text = value.strip().partition(" ")
    upper = word.upper()
    if upper in ("OK", "PERMIT") or (upper.isdigit() and len(upper) != 3):
        return PERMIT
    if upper == "DUNNO":
        return DUNNO
    if upper == "REJECT":
        return _refusal(ACCESS_DENIED, text)
    if upper in ("DEFER", "DEFER_IF_PERMIT"):
        return _refusal(ACCESS_DEFERRED, text)
    if len(upper) == 3 and upper.isdigit() and upper[0] in "45":
        code = int(upper)
        enhanced, _, rest = text.partition(" ")
        if not _is_enhanced(enhanced, upper[0]):
            enhanced, rest = f"{upper[0]}.7.1", text
        return Verdict(Action.REJECT, Reply.of(code, enhanced, rest or "Access denied"))
    return Verdict(Action.REJECT, CONFIG_ERROR)


def _is_enhanced(text: str, klass: str) -> bool:
    parts = text.split(".")
    return len(parts) == 3 and parts[0] == klass and all(p.isdigit() for p in parts)


def _refusal(reply: Reply, text: str) -> Verdict:
    return Verdict(Action.REJECT, reply.with_text(text) if text else reply)


class AccessTables:
    """postfix access(5) tables read from their text files.

    Each file is read again when its mtime changes. Lookups read the
    disk, so call `lookup` off the event loop (smtpd runs the whole
    RCPT decision in a worker thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, tuple[float, dict[str, str]]] = {}

    def lookup(self, spec: str, keys: Sequence[str]) -> str | None:
        table = self._load(_table_file(spec))
        for key in keys:
            if key in table:
                return table[key]
        return None

    def _load(self, path: str) -> dict[str, str]:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return {}
        with self._lock:
            cached = self._tables.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        table = parse_access_table(Path(path).read_text("utf-8", "replace"))
        with self._lock:
            self._tables[path] = (mtime, table)
        return table


def _table_file(spec: str) -> str:
    kind, colon, rest = spec.partition(":")
    return rest if colon and not kind.startswith("/") else spec


def parse_access_table(text: str) -> dict[str, str]:
    """`key value` lines; `#` comments; a line starting with white
    space continues the previous one (postfix table syntax)."""
    table: dict[str, str] = {}
    last = ""
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0].isspace() and last:
            table[last] += " " + raw.strip()
            continue
        key, _, value = raw.strip().partition(" ")
        last = key.lower()
        table[last] = value.strip()
    return table
