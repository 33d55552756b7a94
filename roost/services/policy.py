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

Sender restrictions (`check_sender`) run at MAIL FROM, as postfix does
with smtpd_delay_reject = no, so a refused sender hears it there. An
authenticated client may only use sender addresses its login owns
(`sender_owners`): the smtpd_sender_login_maps tables when set, else
Roost's rule that login `alice` owns `alice@` and `alice+ext@` each
mydestination domain and a virtual login `name@domain` owns that
address. smtpd_sender_login_check = yes applies that check to every
authenticated client, as if smtpd_sender_restrictions began with
reject_authenticated_sender_login_mismatch.

Restrictions that need DNS (reject_unknown_sender_domain,
reject_unknown_recipient_domain) read a `DomainStatus` that smtpd
looked up beforehand (asynchronously, roost.services.dnscheck); the
functions here never touch the network.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from roost.config.values import RESTRICTIONS_WITH_ARGUMENT
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


class DomainStatus(Enum):
    """What DNS says of a mail domain (postfix reject_unknown_*_domain)."""

    OK = "ok"
    # NXDOMAIN, or neither MX nor A/AAAA records
    NOT_FOUND = "not found"
    # RFC 7505: a single MX record "0 ."
    NULL_MX = "null mx"
    # the resolver failed or timed out: decide later
    TEMPORARY = "temporary"


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
    # None: not looked up (our own domain, a literal, or not asked for)
    sender_domain_status: DomainStatus | None = None
    recipient_domain_status: DomainStatus | None = None


@dataclass(frozen=True, slots=True)
class Domains:
    """The domain, network and table settings the policy needs.

    `is_ours` is LocalRecipients.is_our_domain when smtpd has one: it
    also knows the virtual alias domains of virtual_alias_maps. It may
    read table files, so policy functions run off the event loop.
    """

    mynetworks: tuple[str, ...]
    mydestination: frozenset[str]
    relay_domains: frozenset[str]
    virtual_mailbox_domains: frozenset[str] = frozenset()
    is_ours: Callable[[str], bool] | None = None
    recipient_delimiter: str = ""
    sender_login_maps: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        mynetworks: Sequence[str],
        mydestination: Sequence[str],
        relay_domains: Sequence[str],
        virtual_mailbox_domains: Sequence[str] = (),
        *,
        is_ours: Callable[[str], bool] | None = None,
        recipient_delimiter: str = "",
        sender_login_maps: Sequence[str] = (),
    ) -> Domains:
        def canon(items: Sequence[str]) -> frozenset[str]:
            return frozenset(canonical_domain(d) for d in items)

        return cls(
            tuple(mynetworks),
            canon(mydestination),
            canon(relay_domains),
            canon(virtual_mailbox_domains),
            is_ours,
            recipient_delimiter,
            tuple(sender_login_maps),
        )


# postfix's replies for each refusal (smtpd_check.c wording)
RELAY_DENIED = Reply.of(554, "5.7.1", "Relay access denied")
RELAY_DEFERRED = Reply.of(454, "4.7.1", "Relay access denied")
ACCESS_DENIED = Reply.of(554, "5.7.1", "Access denied")
ACCESS_DEFERRED = Reply.of(450, "4.7.1", "Try again later")
NON_FQDN = Reply.of(504, "5.5.2", "need fully-qualified address")
UNKNOWN_USER = Reply.of(550, "5.1.1", "User unknown in local recipient table")
CONFIG_ERROR = Reply.of(451, "4.3.5", "Server configuration error")
# reject_*_sender_login_mismatch (RFC 3463 5.7.1: delivery not authorized)
LOGIN_MISMATCH = Reply.of(553, "5.7.1", "Sender address rejected")
# reject_unknown_*_domain: RFC 3463 X.1.8 bad sender's system address,
# X.1.2 bad destination system address
UNKNOWN_SENDER_DOMAIN = Reply.of(550, "5.1.8", "Domain not found")
UNKNOWN_RECIPIENT_DOMAIN = Reply.of(550, "5.1.2", "Domain not found")
SENDER_DOMAIN_TEMPFAIL = Reply.of(450, "4.1.8", "Domain not found")
RECIPIENT_DOMAIN_TEMPFAIL = Reply.of(450, "4.1.2", "Domain not found")
# RFC 7505 4.2 (sender) and 4.1 with RFC 3463 5.1.10 (recipient)
NULL_MX_SENDER = Reply.of(550, "5.7.27", "Domain does not accept mail (nullMX)")
NULL_MX_RECIPIENT = Reply.of(556, "5.1.10", "Domain does not accept mail (nullMX)")

# restrictions that stop relaying when they come last (postfix's list)
_RELAY_GUARDS = frozenset(
    {"reject_unauth_destination", "defer_unauth_destination", "reject", "defer"}
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
    """Whether mail for domain is delivered here: mydestination,
    virtual_mailbox_domains or (through `is_ours`) a virtual alias
    domain. May read table files when `is_ours` is set."""
    canon = canonical_domain(domain)
    if canon in domains.mydestination or canon in domains.virtual_mailbox_domains:
        return True
    return domains.is_ours is not None and domains.is_ours(canon)


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
        if name in RESTRICTIONS_WITH_ARGUMENT and i + 1 < len(restrictions):
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
    *,
    client_restrictions: Sequence[str] = (),
    helo_restrictions: Sequence[str] = (),
) -> Verdict:
    """The lists for one RCPT, then the implicit guards: unknown local
    users (550 5.1.1) and the relay guard of the module note.

    Client and HELO restrictions are applied here too, as postfix does
    with its default smtpd_delay_reject = yes: clients that misbehave
    only after a reject at connect are kept talking until RCPT, where
    the reject can be logged with sender and recipient. A PERMIT ends
    only its own list; a REJECT in any list ends the decision."""
    lists = (
        client_restrictions,
        helo_restrictions,
        relay_restrictions,
        recipient_restrictions,
    )
    for items in lists:
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


def check_sender(
    sender_restrictions: Sequence[str],
    facts: Facts,
    domains: Domains,
    lookup: Lookup | None = None,
    *,
    login_check: bool = True,
) -> Verdict:
    """The MAIL FROM decision: with login_check (the
    smtpd_sender_login_check setting) an authenticated client must own
    the sender first; then smtpd_sender_restrictions. PERMIT or REJECT.
    """
    if login_check:
        verdict = _login_mismatch(facts, domains, lookup, authenticated=True)
        if verdict.action is Action.REJECT:
            return Verdict(Action.REJECT, verdict.reply, "smtpd_sender_login_check")
    verdict = evaluate(sender_restrictions, facts, domains, lookup)
    return verdict if verdict.action is Action.REJECT else PERMIT


def names_any(restrictions: Sequence[str], *names: str) -> bool:
    """Whether a restriction list uses one of names (to know whether a
    lookup it needs is worth making)."""
    wanted = set(names)
    return any(word.lower() in wanted for word in restrictions)


def domain_to_look_up(address: str, domains: Domains) -> str | None:
    """The domain of address that reject_unknown_*_domain would ask DNS
    about, or None: no domain, an address literal, or our own final
    destination (postfix skips those). May read table files."""
    _, domain = split_recipient(address)
    if not domain or domain.startswith("["):
        return None
    if is_local_domain(domain, domains):
        return None
    return domain


# sender ownership (postfix smtpd_sender_login_maps) -------------------


def split_extension(local_part: str, delimiters: str) -> str:
    """The local part without its address extension (`alice+tag` ->
    `alice`), postfix's recipient_delimiter: any of the characters."""
    for i, ch in enumerate(local_part):
        if i and ch in delimiters:
            return local_part[:i]
    return local_part


def sender_owners(
    sender: str, domains: Domains, lookup: Lookup | None
) -> tuple[str, ...] | None:
    """The logins that own sender, lower case; None when no one does.

    With smtpd_sender_login_maps the tables decide, looked up in
    postfix's order for a sender: the address, the address without
    extension, the local part (both forms) when the domain is in
    mydestination, then `@domain`; the value lists logins separated
    by commas or spaces. Without tables the address is owned by the
    login of its name (see the module note).
    """
    if not sender:
        return None
    if domains.sender_login_maps:
        return _table_owners(sender, domains, lookup)
    local, domain = split_recipient(sender)
    base = split_extension(local, domains.recipient_delimiter).lower()
    if domain in domains.mydestination:
        return (base,)
    if domain in domains.virtual_mailbox_domains:
        return (f"{base}@{domain}",)
    return None


def _table_owners(
    sender: str, domains: Domains, lookup: Lookup | None
) -> tuple[str, ...] | None:
    if lookup is None:
        return None
    keys = _login_map_keys(sender, domains)
    for table in domains.sender_login_maps:
        value = lookup(table, keys)
        if value is not None:
            owners = value.replace(",", " ").split()
            return tuple(owner.lower() for owner in owners)
    return None


def _login_map_keys(sender: str, domains: Domains) -> list[str]:
    local, domain = split_recipient(sender)
    local = local.lower()
    base = split_extension(local, domains.recipient_delimiter)
    keys = [f"{local}@{domain}", f"{base}@{domain}"]
    if domain in domains.mydestination:
        keys += [local, base]
    keys.append(f"@{domain}")
    return list(dict.fromkeys(keys))


def _login_mismatch(
    facts: Facts,
    domains: Domains,
    lookup: Lookup | None,
    *,
    authenticated: bool = False,
    unauthenticated: bool = False,
) -> Verdict:
    """postfix's reject_{,un}authenticated_sender_login_mismatch."""
    if not facts.sender:
        # the null sender is owned by no one and allowed to everyone
        return DUNNO
    owners = sender_owners(facts.sender, domains, lookup)
    login = facts.sasl_username.lower()
    if login and authenticated and login not in (owners or ()):
        why = f"not owned by user {facts.sasl_username}"
    elif not login and unauthenticated and owners:
        why = "not logged in"
    else:
        return DUNNO
    text = f"<{facts.sender}>: {LOGIN_MISMATCH.lines[0]}: {why}"
    return Verdict(Action.REJECT, LOGIN_MISMATCH.with_text(text))


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
        if name in _NEEDS_RECIPIENT and not facts.recipient:
            # a recipient check in a list run at MAIL FROM
            return DUNNO
        return simple(facts, domains)
    mismatch = _LOGIN_MISMATCH.get(name)
    if mismatch is not None:
        authenticated, unauthenticated = mismatch
        return _login_mismatch(
            facts,
            domains,
            lookup,
            authenticated=authenticated,
            unauthenticated=unauthenticated,
        )
    if name == "check_recipient_access":
        if not facts.recipient:
            return DUNNO
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


def _unknown_domain(address: str, status: DomainStatus | None, what: str) -> Verdict:
    """reject_unknown_{sender,recipient}_domain from a looked-up status."""
    is_sender = what == "Sender"
    if status is DomainStatus.NOT_FOUND:
        reply = UNKNOWN_SENDER_DOMAIN if is_sender else UNKNOWN_RECIPIENT_DOMAIN
    elif status is DomainStatus.TEMPORARY:
        reply = SENDER_DOMAIN_TEMPFAIL if is_sender else RECIPIENT_DOMAIN_TEMPFAIL
    elif status is DomainStatus.NULL_MX:
        reply = NULL_MX_SENDER if is_sender else NULL_MX_RECIPIENT
    else:
        return DUNNO
    text = f"<{address}>: {what} address rejected: {reply.lines[0]}"
    return Verdict(Action.REJECT, reply.with_text(text))


def _unknown_sender_domain(facts: Facts, domains: Domains) -> Verdict:
    if not facts.sender:
        return DUNNO
    return _unknown_domain(facts.sender, facts.sender_domain_status, "Sender")


def _unknown_recipient_domain(facts: Facts, domains: Domains) -> Verdict:
    status = facts.recipient_domain_status
    return _unknown_domain(facts.recipient, status, "Recipient")


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
    "reject_unknown_sender_domain": _unknown_sender_domain,
    "reject_unknown_recipient_domain": _unknown_recipient_domain,
}
# restrictions about the recipient: no-ops when run at MAIL FROM
_NEEDS_RECIPIENT = frozenset(
    {
        "permit_auth_destination",
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject_non_fqdn_recipient",
        "reject_unlisted_recipient",
        "reject_unknown_recipient_domain",
    }
)
# name -> (checks authenticated clients, checks unauthenticated ones)
_LOGIN_MISMATCH: dict[str, tuple[bool, bool]] = {
    "reject_sender_login_mismatch": (True, True),
    "reject_authenticated_sender_login_mismatch": (True, False),
    "reject_unauthenticated_sender_login_mismatch": (False, True),
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
