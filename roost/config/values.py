"""Typed values of main.cf parameters.

Each converter takes the expanded text of a parameter and returns the
typed value, or raises ValueError with a short message saying what is
wrong (the caller adds file:line). A `Kind` pairs a converter with the
postfix default unit for times.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roost.config.syntax import split_list

Converter = Callable[[str, "Context"], object]


@dataclass(frozen=True, slots=True)
class Context:
    """What a converter may need besides the text."""

    base_dir: Path


@dataclass(frozen=True, slots=True)
class Kind:
    """How to turn a parameter's text into its typed value."""

    name: str
    convert: Converter


def _string(text: str, ctx: Context) -> object:
    return text


def _boolean(text: str, ctx: Context) -> object:
    word = text.lower()
    if word == "yes":
        return True
    if word == "no":
        return False
    raise ValueError(f"bad boolean value {text!r} (use yes or no)")


def _plain_list(text: str, ctx: Context) -> object:
    return split_list(text)


def _integer(minimum: int) -> Converter:
    def convert(text: str, ctx: Context) -> object:
        if not re.fullmatch(r"[0-9]+", text):
            raise ValueError(f"bad numerical value {text!r}")
        number = int(text)
        if number < minimum:
            raise ValueError(f"value {number} is less than {minimum}")
        return number

    return convert


def _port(text: str, ctx: Context) -> object:
    # 0 asks the listener for any free port (tests use it)
    if text.lower() == "none":
        return None
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 65535:
        raise ValueError(f"bad port {text!r} (use 0-65535 or none)")
    return int(text)


_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, default_unit: str = "s") -> int:
    """Seconds in a postfix time value: a number and a unit s/m/h/d/w.

    A bare number takes the parameter's default unit (postconf(5)).
    """
    match = re.fullmatch(r"([0-9]+)([smhdwSMHDW]?)", text)
    if match is None:
        raise ValueError(f"bad time value {text!r} (use e.g. 300s, 5m, 1h, 5d)")
    unit = (match.group(2) or default_unit).lower()
    return int(match.group(1)) * _TIME_UNITS[unit]


def _time(default_unit: str) -> Converter:
    def convert(text: str, ctx: Context) -> object:
        return parse_time(text, default_unit)

    return convert


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def check_hostname(text: str) -> str:
    """Lower-cased host or domain name, or ValueError.

    Letters, digits and hyphens in dot-separated labels (RFC 1123 2.1);
    U-labels are converted to their A-label form.
    """
    name = text.lower().rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii") if name else ""
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 253:
        raise ValueError(f"bad host name {text!r}")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"bad host name {text!r}")
    return ascii_name


def _hostname(text: str, ctx: Context) -> object:
    return check_hostname(text)


def _domain_list(text: str, ctx: Context) -> object:
    return [check_hostname(item) for item in split_list(text)]


def parse_network(text: str) -> str:
    """One mynetworks element as a CIDR string.

    Accepts `a.b.c.d`, `a.b.c.d/n`, `[v6]`, `[v6]/n` and bare `v6/n`
    (postfix writes IPv6 in brackets: `[::1]/128`). A bare address is a
    host network. Host bits set below the mask are an error, as postfix
    3.x treats them, since they usually mean a typo.
    """
    address, slash, mask = text.partition("/")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
        if ":" not in address:
            raise ValueError(f"bad network {text!r}: brackets are for IPv6")
    spec = f"{address}/{mask}" if slash else address
    try:
        network = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise ValueError(f"bad network {text!r}") from None
    if network.network_address != ipaddress.ip_address(address):
        raise ValueError(
            f"non-null host address bits in {text!r}, perhaps you should "
            f"use {str(network)!r} instead"
        )
    return str(network)


def _networks(text: str, ctx: Context) -> object:
    items = split_list(text)
    for item in items:
        if item.startswith("/") or re.match(r"[a-z]+:/", item):
            raise ValueError(f"lookup tables in mynetworks are not supported: {item}")
    return [parse_network(item) for item in items]


_INTERFACE_WORDS = {
    "all": ["0.0.0.0", "::"],  # noqa: S104 (the admin asked for all)
    "loopback-only": ["127.0.0.1", "::1"],
    "localhost": ["127.0.0.1", "::1"],
}


def _interfaces(text: str, ctx: Context) -> object:
    items = split_list(text.lower())
    if not items:
        raise ValueError("inet_interfaces is empty")

    addresses: list[str] = []
    for item in items:
        if item in _INTERFACE_WORDS:
            found = _INTERFACE_WORDS[item]
        else:
            found = [_interface_address(item)]
        addresses.extend(a for a in found if a not in addresses)
    return addresses


def _interface_address(item: str) -> str:
    bare = item[1:-1] if item.startswith("[") and item.endswith("]") else item
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        # Host names are not resolved here: loading a config must not
        # send DNS queries. Use addresses, all, or loopback-only.
        raise ValueError(
            f"bad interface {item!r} (use an address, all or loopback-only)"
        ) from None


def _path(text: str, ctx: Context) -> object:
    if not text:
        raise ValueError("empty path")
    if any(ch.isspace() or ch == "," for ch in text):
        # these paths are expanded into lists (alias_maps), where white
        # space and commas split them
        raise ValueError(f"white space or comma in path {text!r}")
    return _resolve(text, ctx)


def _resolve(text: str, ctx: Context) -> Path:
    if "\0" in text:
        raise ValueError(f"NUL in path {text!r}")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise ValueError(f"cannot expand ~ in {text!r}") from None
    return path if path.is_absolute() else ctx.base_dir / path


def _optional_path(text: str, ctx: Context) -> object:
    return _resolve(text, ctx) if text else None


# Table types that name a file of `key value` lines, which Roost reads as
# text (no .db files: `roost newaliases` reindexes the text itself).
FILE_TABLE_TYPES = frozenset(
    {"hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash", "inline"}
)


def table_path(spec: str) -> str:
    """The file of a lookup table spec: `hash:/etc/aliases` -> `/etc/aliases`."""
    kind, colon, rest = spec.partition(":")
    if not colon:
        return spec
    if kind.lower() not in FILE_TABLE_TYPES or kind.lower() == "inline":
        raise ValueError(f"unsupported lookup table type {kind!r} in {spec!r}")
    if not rest:
        raise ValueError(f"missing file name in {spec!r}")
    return rest


def _tables(text: str, ctx: Context) -> object:
    return [str(_resolve(table_path(item), ctx)) for item in split_list(text)]


def _choice(*words: str) -> Converter:
    def convert(text: str, ctx: Context) -> object:
        if text.lower() not in words:
            raise ValueError(f"bad value {text!r} (use one of: {', '.join(words)})")
        return text.lower()

    return convert


def _relayhost(text: str, ctx: Context) -> object:
    """`host`, `host:port`, `[host]` or `[host]:port`, or empty."""
    if not text:
        return ""
    match = re.fullmatch(r"(\[([^\]]+)\]|[^\[\]:\s]+)(?::([0-9]{1,5}))?", text)
    if match is None or (match.group(3) and int(match.group(3)) > 65535):
        raise ValueError(f"bad relayhost {text!r} (use host, [host] or [host]:port)")
    inner = match.group(2)
    if inner is not None:
        _host_or_address(inner, text)
    else:
        check_hostname(match.group(1))
    return text


def _host_or_address(host: str, original: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            check_hostname(host)
        except ValueError:
            raise ValueError(f"bad host in {original!r}") from None


def parse_resolver(text: str) -> tuple[str, int]:
    """A dns_resolver element (`ip`, `ip:port`, `[v6]:port`) as (ip, port)."""
    match = re.fullmatch(r"\[([^\]]+)\](?::([0-9]{1,5}))?", text)
    if match is not None:
        host, port = match.group(1), match.group(2)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"bad resolver address {text!r}") from None
    bad_port = port is not None and not (port.isdigit() and 0 < int(port) < 65536)
    if bad_port:
        raise ValueError(f"bad resolver port in {text!r}")
    return address, int(port) if port else 53


def _resolvers(text: str, ctx: Context) -> object:
    items = split_list(text)
    for item in items:
        parse_resolver(item)
    return items


def _address(text: str, ctx: Context) -> object:
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise ValueError(f"bad IP address {text!r}") from None


def _delimiter(text: str, ctx: Context) -> object:
    if any(ch.isspace() or ch in '@"\\<>' for ch in text):
        raise ValueError(f"bad recipient_delimiter {text!r}")
    return text


# Postfix's smtpd access restrictions, and the ones that take one
# argument (a table or a value) after them.
_RESTRICTIONS = frozenset(
    {
        "permit",
        "reject",
        "defer",
        "defer_if_permit",
        "defer_if_reject",
        "warn_if_reject",
        "permit_mynetworks",
        "permit_sasl_authenticated",
        "permit_auth_destination",
        "permit_tls_clientcerts",
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject_unauth_pipelining",
        "reject_unknown_recipient_domain",
        "reject_unknown_sender_domain",
        "reject_non_fqdn_recipient",
        "reject_non_fqdn_sender",
        "reject_non_fqdn_helo_hostname",
        "reject_invalid_helo_hostname",
        "reject_unknown_helo_hostname",
        "reject_unknown_client_hostname",
        "reject_unknown_reverse_client_hostname",
        "reject_unlisted_recipient",
        "reject_unlisted_sender",
        "reject_sender_login_mismatch",
        "reject_authenticated_sender_login_mismatch",
        "reject_unauthenticated_sender_login_mismatch",
        "reject_multi_recipient_bounce",
        "permit_inet_interfaces",
        "sleep",
    }
)
RESTRICTIONS_WITH_ARGUMENT = frozenset(
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


def _restrictions(text: str, ctx: Context) -> object:
    items = split_list(text)
    i = 0
    while i < len(items):
        word = items[i].lower()
        if word in RESTRICTIONS_WITH_ARGUMENT:
            if i + 1 >= len(items):
                raise ValueError(f"{word} needs an argument")
            i += 2
            continue
        if word not in _RESTRICTIONS:
            raise ValueError(f"unknown restriction {items[i]!r}")
        i += 1
    return items


def _words(*allowed: str) -> Converter:
    def convert(text: str, ctx: Context) -> object:
        items = split_list(text.lower())
        for item in items:
            if item not in allowed:
                raise ValueError(
                    f"bad value {item!r} (use any of: {', '.join(allowed)})"
                )
        return items

    return convert


STRING = Kind("string", _string)
BOOLEAN = Kind("boolean", _boolean)
LIST = Kind("list", _plain_list)
HOSTNAME = Kind("hostname", _hostname)
DOMAIN_LIST = Kind("domain list", _domain_list)
NETWORKS = Kind("networks", _networks)
INTERFACES = Kind("interfaces", _interfaces)
PORT = Kind("port", _port)
PATH = Kind("path", _path)
OPTIONAL_PATH = Kind("optional path", _optional_path)
TABLES = Kind("tables", _tables)
RELAYHOST = Kind("relayhost", _relayhost)
RESOLVERS = Kind("resolvers", _resolvers)
OPTIONAL_ADDRESS = Kind("optional address", _address)
DELIMITER = Kind("delimiter", _delimiter)
RESTRICTIONS = Kind("restrictions", _restrictions)
DELIVERY_CLASSES = Kind("classes", _words("alias", "forward", "include"))
LOG_LEVEL = Kind("log level", _choice("debug", "info", "warning", "error"))
TLS_LEVEL = Kind(
    "tls level",
    _choice("none", "may", "encrypt", "dane", "dane-only", "verify", "secure"),
)


def integer(minimum: int = 0) -> Kind:
    return Kind(f"integer >= {minimum}", _integer(minimum))


def time(default_unit: str = "s") -> Kind:
    return Kind(f"time ({default_unit})", _time(default_unit))
