"""Typed settings: the table of parameters and how main.cf becomes one.

`Settings` is the table. Each parameter is one field row,

    smtpd_timeout: int = _p(v.time("s"), "300s", "SMTP idle timeout")

giving its type, its kind (how text becomes a value, `values.py`), its
default as postfix would print it (`postconf -d`), `$` references and
all, and a line of help; a default that must be computed (the host
name) is a function of the other parameters' expanded values. To add a
parameter, add a row.

Loading runs in three steps: parse the file into entries
(`syntax.py`), expand every known parameter's text (the file's value or
the default) with loop detection, then convert each to its type and run
the few checks that involve two parameters. Problems are collected, not
raised one by one, so `roost config check` shows them all.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.config import values as v
from roost.config.syntax import (
    ConfigSyntaxError,
    Entry,
    expand,
    parse_lines,
    references,
)

Default = str | Callable[[Callable[[str], str]], str]


class ConfigError(Exception):
    """The configuration has errors; `errors` lists "file:line: message",
    `warnings` the warnings found before the errors stopped the load
    (unknown parameters), in the same form, for a full report."""

    def __init__(self, errors: list[str], warnings: Sequence[str] = ()) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
        self.warnings = list(warnings)


@functools.cache
def local_hostname() -> str:
    """The host's fully qualified name, as postfix's myhostname default.

    socket.getfqdn() often answers "localhost" on machines whose
    /etc/hosts maps the host name to 127.0.0.1; the plain host name is
    more useful then.
    """
    fqdn = socket.getfqdn().lower().rstrip(".")
    if "." in fqdn and not fqdn.startswith("localhost"):
        return fqdn
    return socket.gethostname().lower().rstrip(".") or "localhost"


def _default_mydomain(get: Callable[[str], str]) -> str:
    # postfix: myhostname minus its first label, "localdomain" if that is
    # empty
    _, dot, parent = get("myhostname").partition(".")
    return parent if dot and parent else "localdomain"


def _default_hostname(get: Callable[[str], str]) -> str:
    return local_hostname()


def _default_data_directory(get: Callable[[str], str]) -> str:
    if os.geteuid() == 0:
        return "/var/lib/roost"
    return str(Path.home() / ".local" / "share" / "roost")


def _p(kind: v.Kind, default: Default, doc: str, *, name: str = "") -> Any:
    """One parameter row; name is given only when it is no Python name."""
    metadata = {"kind": kind, "default": default, "doc": doc, "name": name}
    return field(metadata=metadata)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every Roost parameter, typed; build with `load` or `from_values`."""

    # identity (postfix names and defaults)
    myhostname: str = _p(
        v.HOSTNAME, _default_hostname, "this host's name (from the system)"
    )
    mydomain: str = _p(
        v.HOSTNAME, _default_mydomain, "myhostname minus its first label"
    )
    myorigin: str = _p(
        v.HOSTNAME, "$myhostname", "domain added to unqualified sender addresses"
    )
    mydestination: list[str] = _p(
        v.DOMAIN_LIST,
        "$myhostname, localhost.$mydomain, localhost",
        "domains delivered to local users and aliases",
    )
    mynetworks: list[str] = _p(
        v.NETWORKS, "127.0.0.0/8 [::1]/128", "trusted clients (may relay)"
    )
    # postfix listens on "all"; Roost starts safe, on loopback only
    inet_interfaces: list[str] = _p(
        v.INTERFACES,
        "loopback-only",
        "addresses to listen on: all, loopback-only or addresses",
    )
    mail_name: str = _p(v.STRING, "Roost", "the name in banners and bounces")
    smtpd_banner: str = _p(
        v.STRING, "$myhostname ESMTP $mail_name", "text after 220 in the greeting"
    )

    # where things live (Roost's: everything under data_directory)
    data_directory: Path = _p(
        v.PATH,
        _default_data_directory,
        "Roost's files (/var/lib/roost as root, else ~/.local/share/roost)",
    )
    queue_directory: Path = _p(v.PATH, "$data_directory/queue", "the mail queue")
    mailbox_directory: Path = _p(
        v.PATH, "$data_directory/mail", "user U's mail is in U/Maildir under it"
    )
    users_file: Path = _p(
        v.PATH, "$data_directory/users", "dovecot-style passwd-file of users"
    )
    alias_maps: list[str] = _p(
        v.TABLES, "hash:$data_directory/aliases", "/etc/aliases-format files"
    )
    recipient_delimiter: str = _p(
        v.DELIMITER, "+", "separates user and extension (user+tag); empty: off"
    )
    log_level: str = _p(v.LOG_LEVEL, "info", "debug, info, warning or error")
    # postfix logs through syslog (or its maillog_file, postfix 3.4+);
    # Roost writes the same syslog-shaped lines here when it is set
    maillog_file: Path | None = _p(
        v.OPTIONAL_PATH, "", "also write the mail log to this file; empty: off"
    )

    # listeners (Roost's); "none" turns one off, 0 picks a free port
    smtp_port: int | None = _p(v.PORT, "25", "SMTP (MX) port")
    submission_port: int | None = _p(v.PORT, "587", "submission, STARTTLS")
    smtps_port: int | None = _p(v.PORT, "465", "submission, implicit TLS")
    imap_port: int | None = _p(v.PORT, "143", "IMAP, STARTTLS")
    imaps_port: int | None = _p(v.PORT, "993", "IMAP, implicit TLS")
    pop3_port: int | None = _p(v.PORT, "110", "POP3, STLS")
    pop3s_port: int | None = _p(v.PORT, "995", "POP3, implicit TLS")
    tls_cert_file: Path | None = _p(
        v.OPTIONAL_PATH, "", "PEM certificate chain; empty: self-signed"
    )
    # as postfix's smtpd_tls_key_file: the key may sit in the cert file
    tls_key_file: Path | None = _p(v.OPTIONAL_PATH, "$tls_cert_file", "PEM private key")

    # limits and timeouts
    message_size_limit: int = _p(
        v.integer(0), "10240000", "largest message in bytes; 0: no limit"
    )
    smtpd_recipient_limit: int = _p(v.integer(1), "1000", "recipients per message")
    smtpd_client_connection_count_limit: int = _p(
        v.integer(0), "50", "sessions per client address; 0: no limit"
    )
    smtpd_timeout: int = _p(v.time("s"), "300s", "SMTP idle timeout")
    imap_idle_timeout: int = _p(v.time("s"), "1800s", "IMAP idle timeout")
    pop3_timeout: int = _p(v.time("s"), "600s", "POP3 idle timeout")
    # dovecot's pop3_lock_session; "no" lets several sessions read one
    # maildrop (each keeps its own snapshot), as dovecot does by default.
    pop3_lock_session: bool = _p(
        v.BOOLEAN, "yes", "one POP3 session per mailbox ([IN-USE])"
    )

    # queue and bounces
    queue_run_delay: int = _p(
        v.time("s"), "300s", "how often the deferred queue is scanned"
    )
    minimal_backoff_time: int = _p(v.time("s"), "300s", "shortest wait before a retry")
    maximal_backoff_time: int = _p(v.time("s"), "4000s", "longest wait before a retry")
    maximal_queue_lifetime: int = _p(
        v.time("d"), "5d", "deferred mail older than this bounces"
    )
    bounce_queue_lifetime: int = _p(
        v.time("d"), "5d", "the same for bounces (then dropped)"
    )
    delay_warning_time: int = _p(
        v.time("h"), "0h", "send a delay notice after this long; 0: never"
    )
    bounce_notice_recipient: str = _p(v.STRING, "postmaster", "who gets bounce notices")
    double_bounce_notice_recipient: str = _p(
        v.STRING,
        "postmaster",
        "who gets undeliverable bounces",
        name="2bounce_notice_recipient",
    )

    # relay control and smtpd policy
    relay_domains: list[str] = _p(
        v.DOMAIN_LIST, "", "other domains we accept mail for and relay"
    )
    smtpd_client_restrictions: list[str] = _p(v.RESTRICTIONS, "", "checks at connect")
    smtpd_helo_restrictions: list[str] = _p(v.RESTRICTIONS, "", "checks at HELO")
    smtpd_sender_restrictions: list[str] = _p(v.RESTRICTIONS, "", "checks at MAIL FROM")
    smtpd_relay_restrictions: list[str] = _p(
        v.RESTRICTIONS,
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        "relay checks at RCPT TO",
    )
    smtpd_recipient_restrictions: list[str] = _p(
        v.RESTRICTIONS, "", "more checks at RCPT TO"
    )
    smtpd_data_restrictions: list[str] = _p(v.RESTRICTIONS, "", "checks at DATA")
    # Roost has no master.cf where postfix turns AUTH on for submission,
    # so AUTH is on by default, and offered only over TLS (loopback
    # excepted, in the services).
    smtpd_sasl_auth_enable: bool = _p(v.BOOLEAN, "yes", "offer SMTP AUTH")
    smtpd_tls_auth_only: bool = _p(
        v.BOOLEAN, "yes", "AUTH only over TLS (loopback excepted)"
    )
    smtpd_sender_login_maps: list[str] = _p(
        v.TABLES, "", "tables of sender address -> users who may use it"
    )
    # Roost's own: postfix leaves this to a restriction in master.cf
    smtpd_sender_login_check: bool = _p(
        v.BOOLEAN,
        "yes",
        "yes: a logged-in client may send only as an address it owns"
        " (smtpd_sender_login_maps; without it login alice owns alice@ and"
        " alice+ext@ each mydestination domain, a virtual login its own"
        " address), else 553 at MAIL FROM; no: any sender"
        " (smtpd_sender_restrictions still apply)",
    )
    strict_rfc821_envelopes: bool = _p(
        v.BOOLEAN, "no", "yes: refuse MAIL FROM/RCPT TO addresses without <>"
    )
    smtpd_peername_lookup: bool = _p(
        v.BOOLEAN, "yes", "look up client host names (PTR, forward-confirmed)"
    )
    smtputf8_enable: bool = _p(v.BOOLEAN, "yes", "offer SMTPUTF8 (RFC 6531)")
    virtual_mailbox_domains: list[str] = _p(
        v.DOMAIN_LIST, "", "domains whose users are name@domain"
    )
    virtual_alias_maps: list[str] = _p(
        v.TABLES, "", "tables of address -> addresses (@domain: catch-all)"
    )
    # postfix allows both from "alias, forward"; Roost runs no commands
    # unless told (case 009) and writes files only for aliases
    allow_mail_to_commands: list[str] = _p(
        v.DELIVERY_CLASSES, "", "where |command targets are allowed"
    )
    allow_mail_to_files: list[str] = _p(
        v.DELIVERY_CLASSES, "alias", "where /file targets are allowed"
    )

    # outbound delivery
    relayhost: str = _p(
        v.RELAYHOST, "", "send all outbound mail here: host, [host]:port"
    )
    transport_maps: list[str] = _p(
        v.TABLES, "", "tables of domain -> next hop (smtp:, lmtp:, error:)"
    )
    smtp_bind_address: str = _p(
        v.OPTIONAL_ADDRESS, "", "source address for outbound SMTP"
    )
    smtp_helo_name: str = _p(v.HOSTNAME, "$myhostname", "our name in EHLO")
    smtp_connect_timeout: int = _p(v.time("s"), "30s", "outbound connect timeout")
    smtp_tls_security_level: str = _p(
        v.TLS_LEVEL, "may", "outbound TLS: none, may, encrypt, verify, ..."
    )
    default_destination_concurrency_limit: int = _p(
        v.integer(1), "20", "parallel deliveries per destination"
    )
    dns_resolver: list[str] = _p(
        v.RESOLVERS, "", "resolvers to ask (ip or ip:port); empty: system's"
    )

    # not parameters: where the settings came from
    config_file: Path | None = None
    warnings: tuple[str, ...] = ()
    explicit: Mapping[str, str] = field(default_factory=dict, repr=False)
    defaults: Mapping[str, str] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> object:
        """The typed value of the parameter called name (postfix spelling)."""
        return getattr(self, _FIELD_OF[name])

    def show(self, non_default_only: bool = False) -> list[str]:
        """`name = value` lines sorted by name, as postconf prints them.

        Values are shown unexpanded, as written (postconf, postconf -n);
        non_default_only keeps only the parameters set in the file.
        """
        lines = []
        for name in sorted(_FIELD_OF):
            if name in self.explicit:
                text = self.explicit[name]
            elif non_default_only:
                continue
            else:
                text = self.defaults[name]
            lines.append(f"{name} = {text}".rstrip())
        return lines

    def describe(self, markdown: bool = False) -> list[str]:
        """One line per parameter: name, this host's default, and help.

        markdown gives the rows of a table for the README's reference.
        """
        lines = ["| name | default | meaning |", "|---|---|---|"] if markdown else []
        for name in sorted(PARAMETERS):
            doc = PARAMETERS[name].metadata["doc"]
            default = self.defaults.get(name, "")
            if markdown:
                shown = f"`{default}`" if default else ""
                doc = doc.replace("|", "\\|")
                lines.append(f"| `{name}` | {shown} | {doc} |")
            else:
                lines.append(f"{name} = {default}".rstrip())
                lines.append(f"    {doc}")
        return lines

    def replace(self, **changes: object) -> Settings:
        """A copy with typed values changed (for tests and tools)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _rows() -> dict[str, dataclasses.Field[Any]]:
    rows = {}
    for f in dataclasses.fields(Settings):
        if "kind" in f.metadata:
            rows[f.metadata["name"] or f.name] = f
    return rows


PARAMETERS: dict[str, dataclasses.Field[Any]] = _rows()
_FIELD_OF = {name: f.name for name, f in PARAMETERS.items()}


def parameter_names() -> list[str]:
    """Every parameter Roost knows, sorted."""
    return sorted(PARAMETERS)


class _Builder:
    """Expand and convert the parameters of one configuration."""

    def __init__(
        self,
        entries: list[Entry],
        base_dir: Path,
        config_file: Path | None,
        errors: list[str],
    ) -> None:
        self.entries = {e.name: e for e in entries}
        self.base_dir = base_dir
        self.config_file = config_file
        self.errors = list(errors)
        self.warnings: list[str] = []
        self.defaults: dict[str, str] = {}
        self.expanded: dict[str, str] = {}
        self.expanding: list[str] = []

    def raw(self, name: str) -> str | None:
        """The unexpanded text of name, from the file or the default."""
        if name in self.entries:
            return self.entries[name].value
        if name not in PARAMETERS:
            return None
        return self.default_text(name)

    def default_text(self, name: str) -> str:
        if name not in self.defaults:
            default = PARAMETERS[name].metadata["default"]
            text = default if isinstance(default, str) else default(self.lookup)
            self.defaults[name] = text
        return self.defaults[name]

    def lookup(self, name: str) -> str:
        """The expanded text of name; raises ConfigSyntaxError on a loop."""
        if name in self.expanded:
            return self.expanded[name]
        if name in self.expanding:
            chain = " -> ".join([*self.expanding, name])
            raise ConfigSyntaxError(f"recursive expansion: {chain}")

        raw = self.raw(name)
        if raw is None:
            # postfix expands an undefined name to nothing
            return ""
        self.expanding.append(name)
        try:
            text = expand(raw, self.lookup)
        finally:
            self.expanding.pop()
        self.expanded[name] = text
        return text

    def where(self, name: str) -> str:
        entry = self.entries.get(name)
        if entry is not None:
            return entry.where
        return f"{self.config_file or 'built-in defaults'}"

    def sources(self, name: str) -> list[Entry]:
        """The file's entries that name's value refers to, in file order."""
        seen: set[str] = set()
        stack, found = [name], []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.entries and current != name:
                found.append(self.entries[current])
            stack.extend(references(self._static_text(current)))
        return sorted(found, key=lambda e: e.line)

    def _static_text(self, name: str) -> str:
        # the text as written, without running computed defaults
        if name in self.entries:
            return self.entries[name].value
        row = PARAMETERS.get(name)
        default = row.metadata["default"] if row else ""
        return default if isinstance(default, str) else ""

    def blame(self, name: str, problem: str) -> str:
        """An error line for name, placed where the admin can fix it."""
        if name in self.entries:
            return f"{self.where(name)}: {name}: {problem}"
        sources = self.sources(name)
        if sources:
            via = ", ".join(e.name for e in sources)
            return f"{sources[0].where}: {name} (default, from {via}): {problem}"
        return f"{self.where(name)}: {name} (default): {problem}; set {name}"

    def _file_order(self, name: str) -> tuple[bool, int]:
        entry = self.entries.get(name)
        return (entry is None, entry.line if entry else 0)

    def convert(self, name: str, *, quiet: bool = False) -> object:
        kind: v.Kind = PARAMETERS[name].metadata["kind"]
        try:
            return kind.convert(self.lookup(name), v.Context(self.base_dir))
        except (ValueError, ConfigSyntaxError) as exc:
            message = self.blame(name, str(exc))
            if not quiet or not self.errors:
                self.errors.append(message)
            return None

    def build(self) -> Settings:
        # Convert the file's values first: a bad one makes the defaults
        # that refer to it fail too, and those echoes are left unsaid.
        typed: dict[str, Any] = {}
        for name in sorted(PARAMETERS, key=self._file_order):
            quiet = name not in self.entries and bool(self.errors)
            typed[PARAMETERS[name].name] = self.convert(name, quiet=quiet)
        self.warn_unknown()
        if self.errors:
            raise ConfigError(self.errors, self.warnings)

        self.check_together(typed)
        if self.errors:
            raise ConfigError(self.errors, self.warnings)

        for name in PARAMETERS:
            self.default_text(name)
        explicit = {n: e.value for n, e in self.entries.items() if n in PARAMETERS}
        return Settings(
            **typed,
            config_file=self.config_file,
            warnings=tuple(self.warnings),
            explicit=explicit,
            defaults={n: t for n, t in self.defaults.items()},
        )

    def warn_unknown(self) -> None:
        # a name of one's own is fine when another value refers to it
        used: set[str] = set()
        for entry in self.entries.values():
            used |= references(entry.value)
        for entry in self.entries.values():
            if entry.name not in PARAMETERS and entry.name not in used:
                self.warnings.append(f"{entry.where}: unknown parameter {entry.name}")

    def check_together(self, typed: dict[str, Any]) -> None:
        if typed["minimal_backoff_time"] > typed["maximal_backoff_time"]:
            # at the line that set one of them (file:line), not the file
            culprit = "maximal_backoff_time"
            if culprit not in self.entries:
                culprit = "minimal_backoff_time"
            self.errors.append(
                f"{self.where(culprit)}: maximal_backoff_time "
                "must not be less than minimal_backoff_time"
            )

        ports: dict[int, str] = {}
        for name in sorted(PARAMETERS):
            if not name.endswith("_port") or not typed[_FIELD_OF[name]]:
                continue
            port = typed[_FIELD_OF[name]]
            if port in ports:
                # blame the line that set a port, not the default it hit
                other = ports[port]
                culprit = other if name not in self.entries else name
                if culprit not in self.entries:
                    culprit = name
                self.errors.append(
                    f"{self.where(culprit)}: {name}: port {port} is also {other}"
                )
            ports[port] = name

        for name in ("tls_cert_file", "tls_key_file"):
            path = typed[name]
            if name == "tls_key_file" and path == typed["tls_cert_file"]:
                continue
            if path is not None and not path.is_file():
                self.errors.append(f"{self.where(name)}: {name}: no such file {path}")


def build(
    entries: list[Entry],
    *,
    base_dir: Path,
    config_file: Path | None = None,
    errors: list[str] | None = None,
) -> Settings:
    """Settings from parsed entries; raises ConfigError.

    errors are earlier (syntax) errors to report along with the rest.
    """
    builder = _Builder(entries, base_dir, config_file, errors or [])
    return builder.build()


def load_text(
    text: str, *, filename: str = "main.cf", base_dir: Path | None = None
) -> Settings:
    """Settings from main.cf text; relative paths resolve against base_dir."""
    entries, errors = parse_lines(text, filename)
    base = base_dir if base_dir is not None else Path.cwd()
    return build(entries, base_dir=base, errors=errors)


def from_values(params: Mapping[str, str], *, base_dir: Path | None = None) -> Settings:
    """Settings from a name -> text mapping (tests, tools): the same
    checks as a file, with `<values>` in place of a file name."""
    entries = [Entry(n, t, "<values>", 0) for n, t in params.items()]
    base = base_dir if base_dir is not None else Path.cwd()
    return build(entries, base_dir=base)


def config_path(path: str | None) -> Path | None:
    """The main.cf that load(path) reads, or None for built-in defaults."""
    chosen = path if path is not None else os.environ.get("ROOST_CONFIG")
    if not chosen:
        return None
    candidate = Path(chosen)
    if candidate.is_dir():
        candidate = candidate / "main.cf"
    return candidate


def load(path: str | None = None) -> Settings:
    """Settings from a main.cf file, or the directory holding it.

    path None means the ROOST_CONFIG environment variable, and without it
    the built-in defaults. Raises ConfigError with "file:line: message"
    errors; warnings (unknown parameters) are in `settings.warnings`.
    Relative paths in the file resolve against the file's directory.
    """
    main_cf = config_path(path)
    if main_cf is None:
        return build([], base_dir=Path.cwd())

    try:
        text = main_cf.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{main_cf}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{main_cf}: cannot read: {exc}"]) from None

    entries, errors = parse_lines(text, str(main_cf))
    base = main_cf.resolve().parent
    return build(entries, base_dir=base, config_file=main_cf, errors=errors)
