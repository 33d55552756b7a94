"""Local delivery: which addresses are ours, aliases, and the mailbox write.

`LocalRecipients.expand` turns an address into targets (after
virtual_alias_maps, for mydestination, virtual mailbox and virtual alias
domains alike): a user's Maildir,
a remote address to forward to, a file to append to, a command, or an
error (an alias loop, an unknown user named by an alias).  smtpd uses
`resolve` (the local users, or None for a domain that is not ours, or
UnknownRecipient) to accept or refuse RCPT TO.

`LocalDelivery.deliver` writes one recipient's copies.  Pipes, files and
:include: come only from the administrator's alias files, never from the
envelope (case 009, as postfix local(8)): an envelope local part is only
ever a key to look up.  Commands are refused unless allow_mail_to_commands
names "alias", and then run from an argv list with no shell; envelope
addresses reach them only as environment variables.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shlex
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from roost.config import table_path
from roost.config.settings import Settings
from roost.delivery.aliases import AliasTable, alias_paths, split_values
from roost.delivery.virtual import VirtualAliases, format_address
from roost.mailstore import maildir
from roost.mailstore.notify import notify_changed
from roost.queue.envelope import Envelope
from roost.queue.result import BOUNCED, DEFERRED, RecipientResult, format_delay

log = logging.getLogger("roost.local")

# How deep aliases may nest and how many targets one address may reach;
# postfix stops at 1000 recipients per expansion as well.
_MAX_DEPTH = 20
_MAX_TARGETS = 1000
_COMMAND_TIMEOUT_S = 300
_EX_TEMPFAIL = 75

# RFC 5321 4.5.1: postmaster must always be accepted; abuse (RFC 2142) too.
_ALWAYS_LOCAL = ("postmaster", "abuse")
_ADMIN_FALLBACKS = ("root", "admin")

# Domain classes (see LocalRecipients)
LOCAL = "local"
VIRTUAL_MAILBOX = "virtual_mailbox"
VIRTUAL_ALIAS = "virtual_alias"


class UnknownRecipient(Exception):  # noqa: N818 (reads as the condition)
    """A local domain, but no such user or alias (550 5.1.1)."""


class UserLookup(Protocol):
    def exists(self, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Where one expanded address goes.

    kind is "mailbox" (value: user name), "forward" (value: address),
    "file" (value: path), "command" (value: command line) or "error"
    (value: reason, dsn: its status).  address is the address this
    target was reached as (Delivered-To); trusted is "alias" for values
    from alias files and "include" for :include: files.
    """

    kind: str
    value: str
    address: str
    dsn: str = ""
    trusted: str = "alias"


@dataclass(frozen=True, slots=True)
class LocalOutcome:
    """The result for one recipient, plus what the queue must still do.

    forwards are addresses to send a copy to (the queue enqueues them as
    a new message with the same sender); delivered_users are the local
    mailboxes that now hold a copy.
    """

    result: RecipientResult
    forwards: tuple[str, ...] = ()
    delivered_users: tuple[str, ...] = ()


def canonical_domain(domain: str) -> str:
    """Lower-case A-label form (RFC 5890): U- and A-labels compare equal."""
    domain = domain.strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def split_address(address: str) -> tuple[str, str]:
    """(local part without quotes, domain) of an envelope address."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at:
        return unquote_local(address), ""
    return unquote_local(local), domain


def unquote_local(local: str) -> str:
    """Remove RFC 5321 quoting: ``"a b"`` -> ``a b``, ``\\x`` -> ``x``."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        out: list[str] = []
        escaped = False
        for char in local[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return local


def _is_safe_user(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and name[0] != "."


def _domain_forms(domain: str) -> tuple[str, ...]:
    """The A-label form, then the U-label form when it differs: a users
    file may name a virtual user either way."""
    try:
        unicode = domain.encode("ascii").decode("idna")
    except UnicodeError:
        return (domain,)
    return tuple(dict.fromkeys((domain, unicode)))


def virtual_alias_paths(settings: Settings) -> list[Path]:
    """The files of settings.virtual_alias_maps."""
    return [Path(table_path(spec)) for spec in settings.virtual_alias_maps]


class LocalRecipients:
    """Our domains, users, aliases, virtual aliases and recipient_delimiter.

    A domain is ours in one of three ways: mydestination (local users
    and alias_maps), virtual_mailbox_domains (users named name@domain
    in the same users file, no alias_maps) or a virtual alias domain
    (a ``domain anything`` line in virtual_alias_maps).  virtual_alias_maps
    rewrite addresses in any of them first, as postfix's cleanup does.
    """

    def __init__(
        self,
        settings: Settings,
        userdb: UserLookup | None,
        aliases: AliasTable | None = None,
        virtual: VirtualAliases | None = None,
    ) -> None:
        self.settings = settings
        self.userdb = userdb
        self.aliases = aliases or AliasTable(alias_paths(settings))
        self.domains = {canonical_domain(d) for d in settings.mydestination}
        self.virtual_domains = {
            canonical_domain(d) for d in settings.virtual_mailbox_domains
        }
        self.origin = canonical_domain(settings.myorigin)
        self.delimiters = settings.recipient_delimiter
        self.virtual = virtual or VirtualAliases(
            virtual_alias_paths(settings), self.origin, self.delimiters
        )

    def is_local_domain(self, domain: str) -> bool:
        """Whether domain is in mydestination."""
        return canonical_domain(domain) in self.domains

    def domain_class(self, domain: str) -> str | None:
        """LOCAL, VIRTUAL_MAILBOX, VIRTUAL_ALIAS, or None: not ours."""
        canon = canonical_domain(domain)
        if canon in self.domains:
            return LOCAL
        if canon in self.virtual_domains:
            return VIRTUAL_MAILBOX
        if self.virtual.is_alias_domain(canon):
            return VIRTUAL_ALIAS
        return None

    def is_our_domain(self, domain: str) -> bool:
        """Whether mail for domain is delivered here (any of the three)."""
        return self.domain_class(domain) is not None

    def is_local(self, address: str) -> bool:
        """Whether address is delivered here (or has no domain)."""
        _, domain = split_address(address)
        return not domain or self.is_our_domain(domain)

    def resolve(self, address: str) -> list[str] | None:
        """Local user names for address; None when the domain is not ours.

        Raises UnknownRecipient for a local address with no user or alias.
        An alias that only forwards elsewhere gives an empty list.  A
        virtual mailbox user is named ``name@domain``.
        """
        targets = self.expand(address)
        if targets is None:
            return None
        users = {t.value for t in targets if t.kind == "mailbox"}
        return sorted(users)

    def expand(self, address: str) -> list[Target] | None:
        """Every target of address; see resolve for None and the exception."""
        local, domain = split_address(address)
        if domain:
            domain = canonical_domain(domain)
            kind = self.domain_class(domain)
            if kind is None:
                return None
        else:
            domain, kind = self.origin, LOCAL
        out: list[Target] = []
        via = format_address(local, domain)
        if not self._expand_address(local, domain, kind, via, [], out, top=True):
            raise UnknownRecipient(address)
        if out and all(t.kind == "error" and t.dsn == "5.1.1" for t in out):
            # every target is an unknown user (a catch-all or alias to
            # nobody): refuse at RCPT rather than accept and bounce
            raise UnknownRecipient(address)
        return out[:_MAX_TARGETS]

    def _expand_address(
        self,
        local: str,
        domain: str,
        kind: str | None,
        via: str,
        stack: list[str],
        out: list[Target],
        *,
        top: bool = False,
        trusted: str = "alias",
    ) -> bool:
        """Expand local@domain (of class kind) into out; False when
        nothing knows it.  via is the address that led here."""
        if kind is None:
            address = format_address(local, domain)
            out.append(Target("forward", address, via, "", trusted))
            return True
        if self._expand_virtual(local, domain, kind, stack, out, trusted):
            return True
        return self._expand_final(local, domain, kind, stack, out, top, trusted)

    def _expand_final(
        self,
        local: str,
        domain: str,
        kind: str,
        stack: list[str],
        out: list[Target],
        top: bool,
        trusted: str,
    ) -> bool:
        """Deliver local@domain by its domain class, past virtual aliasing."""
        if kind == LOCAL:
            return self._expand_name(
                local, domain, stack, out, top=top, trusted=trusted
            )

        address = format_address(local, domain)
        user = self._virtual_user(local, domain) if kind == VIRTUAL_MAILBOX else None
        if user is not None:
            out.append(Target("mailbox", user, address))
            return True
        if self._base_name(local.lower()) in _ALWAYS_LOCAL:
            # RFC 5321 4.5.1: every domain we take mail for has a postmaster
            return self._expand_name(local, self.origin, stack, out, trusted=trusted)
        if not top:
            out.append(Target("error", f"unknown user: {local}", address, "5.1.1"))
        return not top

    def _expand_virtual(
        self,
        local: str,
        domain: str,
        kind: str,
        stack: list[str],
        out: list[Target],
        trusted: str,
    ) -> bool:
        """Rewrite by virtual_alias_maps; False when no entry matched."""
        is_local_site = kind == LOCAL or domain == self.origin
        match = self.virtual.lookup(local, domain, is_local_site=is_local_site)
        if match is None:
            return False
        address = format_address(local, domain)
        marker = f"virtual:{address.lower()}"
        if marker in stack:
            reason = f"mail forwarding loop for {address}"
            out.append(Target("error", reason, address, "5.4.6"))
            return True
        if len(stack) >= _MAX_DEPTH or len(out) >= _MAX_TARGETS:
            out.append(Target("error", "alias expansion too deep", address, "5.4.6"))
            return True

        stack.append(marker)
        for new_local, new_domain in match.addresses:
            if (new_local.lower(), new_domain) == (local.lower(), domain):
                # "a@x  a@x, b@y": a@x keeps its own copy too
                self._expand_final(local, domain, kind, stack, out, False, trusted)
                continue
            new_kind = self.domain_class(new_domain)
            self._expand_address(
                new_local, new_domain, new_kind, address, stack, out, trusted=trusted
            )
        stack.pop()
        return True

    def _virtual_user(self, local: str, domain: str) -> str | None:
        if "@" in local or self.userdb is None:
            return None
        base = self._base_name(local)
        for name in dict.fromkeys((local, local.lower(), base, base.lower())):
            if not _is_safe_user(name):
                continue
            for form in _domain_forms(domain):
                if self.userdb.exists(f"{name}@{form}"):
                    return f"{name}@{form}"
        return None

    def _user(self, name: str) -> str | None:
        if not _is_safe_user(name) or self.userdb is None:
            return None
        for candidate in dict.fromkeys((name, name.lower())):
            if self.userdb.exists(candidate):
                return candidate
        return None

    def _base_name(self, name: str) -> str:
        if not self.delimiters:
            return name
        cut = min((i for i, c in enumerate(name) if c in self.delimiters), default=-1)
        return name[:cut] if cut > 0 else name

    def _expand_name(
        self,
        name: str,
        domain: str,
        stack: list[str],
        out: list[Target],
        *,
        top: bool = False,
        trusted: str = "alias",
    ) -> bool:
        """Expand a local name into out; False when nothing knows it."""
        key = name.lower()
        address = format_address(name, domain)
        if key in stack:
            reason = f"mail forwarding loop for {format_address(key, domain)}"
            out.append(Target("error", reason, address, "5.4.6"))
            return True
        if len(stack) >= _MAX_DEPTH or len(out) >= _MAX_TARGETS:
            out.append(Target("error", "alias expansion too deep", address, "5.4.6"))
            return True

        base = self._base_name(key)
        for alias_key in dict.fromkeys((key, base)):
            values = self.aliases.lookup(alias_key)
            if values is not None:
                stack.append(alias_key)
                for value in values:
                    self._expand_value(value, alias_key, domain, stack, out, trusted)
                stack.pop()
                return True

        user = self._user(key) or self._user(base)
        if user is not None:
            out.append(Target("mailbox", user, address))
            return True
        if base in _ALWAYS_LOCAL:
            self._expand_admin(address, domain, stack, out)
            return True
        if not top:
            out.append(Target("error", f"unknown user: {name}", address, "5.1.1"))
        return not top

    def _expand_admin(
        self, address: str, domain: str, stack: list[str], out: list[Target]
    ) -> None:
        for admin in _ADMIN_FALLBACKS:
            if self.aliases.lookup(admin) is not None or self._user(admin):
                self._expand_name(admin, domain, stack, out)
                return
        # No root or admin anywhere: postmaster still exists, with a
        # mailbox of its own.
        out.append(Target("mailbox", "postmaster", address))

    def _expand_value(
        self,
        value: str,
        alias_key: str,
        domain: str,
        stack: list[str],
        out: list[Target],
        trusted: str,
    ) -> None:
        address = format_address(alias_key, domain)
        if value.startswith("|"):
            out.append(Target("command", value[1:].strip(), address, "", trusted))
        elif value.lower().startswith(":include:"):
            self._expand_include(value[9:].strip(), alias_key, domain, stack, out)
        elif value.startswith("/"):
            out.append(Target("file", value, address, "", trusted))
        elif "@" in value:
            local, target_domain = split_address(value)
            canon = canonical_domain(target_domain)
            kind = self.domain_class(canon)
            if kind is None:
                out.append(Target("forward", value, address, "", trusted))
            else:
                self._expand_address(
                    local, canon, kind, address, stack, out, trusted=trusted
                )
        elif value.lower() == alias_key:
            # "name: name, other" delivers to the user called name itself
            user = self._user(value)
            if user is not None:
                out.append(Target("mailbox", user, address))
            else:
                reason = f"unknown user: {value}"
                out.append(Target("error", reason, address, "5.1.1"))
        else:
            self._expand_name(value, domain, stack, out, trusted=trusted)

    def _expand_include(
        self,
        path: str,
        alias_key: str,
        domain: str,
        stack: list[str],
        out: list[Target],
    ) -> None:
        address = f"{alias_key}@{domain}"
        marker = f":include:{path}"
        if marker in stack:
            reason = f"mail forwarding loop for {stack[0]}@{domain}"
            out.append(Target("error", reason, address, "5.4.6"))
            return
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            reason = f"cannot read include file {path}: {exc.strerror}"
            out.append(Target("error", reason, address, "4.3.0"))
            return
        stack.append(marker)
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                for value in split_values(line):
                    self._expand_value(value, alias_key, domain, stack, out, "include")
        stack.pop()


@dataclass(slots=True)
class _Attempt:
    """What happened to the targets of one recipient."""

    forwards: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    failures: list[RecipientResult] = field(default_factory=list)


def _header_section(data: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end >= 0:
            return data[: end + len(separator) // 2]
    return data


def has_delivered_to(data: bytes, address: str) -> bool:
    """Whether data already has ``Delivered-To: address`` (RFC 5321 6.3)."""
    wanted = address.strip().lower().encode("utf-8", "surrogateescape")
    for line in _header_section(data).splitlines():
        name, colon, value = line.partition(b":")
        is_delivered_to = colon and name.strip().lower() == b"delivered-to"
        if is_delivered_to and value.strip().lower() == wanted:
            return True
    return False


def _header_safe(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


def delivered_copy(envelope: Envelope, data: bytes, delivered_to: str) -> bytes:
    """The mailbox copy: Return-Path and Delivered-To first, LF line ends.

    Return-Path shows the reverse path verbatim (RFC 5321 4.4), <> for
    the null sender.
    """
    prefix = (
        f"Return-Path: <{_header_safe(envelope.mail_from)}>\r\n"
        f"Delivered-To: {_header_safe(delivered_to)}\r\n"
    ).encode("utf-8", "surrogateescape")
    return (prefix + data).replace(b"\r\n", b"\n")


def copy_unique(queue_id: str) -> str:
    """The Maildir name part that marks the copy made from queue_id."""
    return f"R{queue_id}"


def find_copy(mailbox: Path, queue_id: str) -> bool:
    """Whether mailbox already holds the copy made from queue_id.

    A half-written copy left in tmp/ by a process that died is removed
    (its name could otherwise block the new copy's).
    """
    marker = f".{copy_unique(queue_id)}."
    try:
        with os.scandir(mailbox / "tmp") as entries:
            stale = [e.path for e in entries if marker in e.name]
    except FileNotFoundError:
        stale = []
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    for sub in ("new", "cur"):
        try:
            with os.scandir(mailbox / sub) as entries:
                if any(marker in entry.name for entry in entries):
                    return True
        except FileNotFoundError:
            continue
    return False


def _allowed(setting: object, trusted: str) -> bool:
    if isinstance(setting, str):
        classes = {c.strip().lower() for c in setting.replace(",", " ").split()}
    elif isinstance(setting, Collection):
        classes = {str(c).lower() for c in setting}
    else:
        classes = set()
    return trusted in classes


class LocalDelivery:
    """Delivers to the targets of local recipients (blocking; run in a thread)."""

    def __init__(
        self,
        settings: Settings,
        recipients: LocalRecipients,
        *,
        command_timeout_s: float = _COMMAND_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.recipients = recipients
        self.command_timeout_s = command_timeout_s
        # postfix's defaults are "alias, forward" for both; Roost refuses
        # commands unless told (case 009) and allows files from aliases.
        self.allow_commands = getattr(settings, "allow_mail_to_commands", "")
        self.allow_files = getattr(settings, "allow_mail_to_files", "alias")

    def is_local(self, address: str) -> bool:
        return self.recipients.is_local(address)

    def deliver(
        self,
        envelope: Envelope,
        data: bytes,
        address: str,
        *,
        skip_users: Collection[str] = (),
        check_duplicates: bool = False,
        attempt_start: float | None = None,
    ) -> LocalOutcome:
        """Deliver data to every target of address.

        skip_users already hold a copy (from an earlier attempt); with
        check_duplicates each Maildir is searched for this message's copy
        first (after a crash).  The result is deferred when any target
        failed temporarily (retrying is safe: copies are deduplicated),
        bounced when any failed permanently, else sent.
        """
        start = attempt_start if attempt_start is not None else time.time()
        try:
            targets = self.recipients.expand(address)
        except UnknownRecipient:
            result = RecipientResult.bounced(address, "unknown user", "5.1.1")
            self._log(envelope, address, address, result, start)
            return LocalOutcome(result)
        if targets is None:
            reason = "not a local domain"
            result = RecipientResult.bounced(address, reason, "5.1.2")
            return LocalOutcome(result)

        attempt = _Attempt()
        done_users = set(skip_users)
        for target in targets:
            self._deliver_target(
                envelope,
                data,
                address,
                target,
                attempt,
                done_users,
                check_duplicates,
                start,
            )
        return LocalOutcome(
            self._summary(address, attempt),
            tuple(attempt.forwards),
            tuple(attempt.users),
        )

    def _summary(self, address: str, attempt: _Attempt) -> RecipientResult:
        deferred = [r for r in attempt.failures if r.status == DEFERRED]
        if deferred:
            return RecipientResult.deferred(
                address, deferred[0].reason, deferred[0].dsn, "local"
            )
        bounced = [r for r in attempt.failures if r.status == BOUNCED]
        if bounced:
            return RecipientResult.bounced(
                address, bounced[0].reason, bounced[0].dsn, "local"
            )
        if attempt.users:
            return RecipientResult.sent(address, "delivered to maildir", "local")
        if attempt.forwards:
            return RecipientResult.sent(address, "forwarded", "local")
        return RecipientResult.sent(address, "delivered", "local")

    def _deliver_target(
        self,
        envelope: Envelope,
        data: bytes,
        orig_to: str,
        target: Target,
        attempt: _Attempt,
        done_users: set[str],
        check_duplicates: bool,
        start: float,
    ) -> None:
        if target.kind == "error":
            result = _error_result(target)
            attempt.failures.append(result)
            self._log(envelope, target.address, orig_to, result, start)
            return
        if has_delivered_to(data, target.address):
            reason = f"mail forwarding loop for {target.address}"
            result = RecipientResult.bounced(target.address, reason, "5.4.6")
            attempt.failures.append(result)
            self._log(envelope, target.address, orig_to, result, start)
            return
        if target.kind == "forward":
            attempt.forwards.append(target.value)
            return

        if target.kind == "mailbox":
            result = self._to_mailbox(
                envelope, data, target, done_users, check_duplicates
            )
            if result.status != DEFERRED and result.status != BOUNCED:
                attempt.users.append(target.value)
                done_users.add(target.value)
        elif target.kind == "file":
            result = self._to_file(envelope, data, target)
        else:
            result = self._to_command(envelope, data, orig_to, target)
        if result.status in (DEFERRED, BOUNCED):
            attempt.failures.append(result)
        self._log(envelope, target.address, orig_to, result, start)

    def _to_mailbox(
        self,
        envelope: Envelope,
        data: bytes,
        target: Target,
        done_users: set[str],
        check_duplicates: bool,
    ) -> RecipientResult:
        user = target.value
        box = maildir.mailbox_path(self.settings.mailbox_directory, user)
        if user in done_users:
            return RecipientResult.sent(target.address, "duplicate suppressed")
        if check_duplicates and find_copy(box, envelope.queue_id):
            return RecipientResult.sent(target.address, "already delivered")
        try:
            maildir.ensure(box)
            maildir.deliver(
                box,
                delivered_copy(envelope, data, target.address),
                unique=copy_unique(envelope.queue_id),
            )
        except OSError as exc:
            reason = f"cannot write to mailbox of {user}: {exc.strerror or exc}"
            return RecipientResult.deferred(target.address, reason, _dsn_for(exc))
        notify_changed(box)  # IMAP IDLE sessions hear of it now
        return RecipientResult.sent(target.address, "delivered to maildir")

    def _to_file(
        self, envelope: Envelope, data: bytes, target: Target
    ) -> RecipientResult:
        if not _allowed(self.allow_files, target.trusted):
            reason = "mail to file is restricted"
            return RecipientResult.bounced(target.address, reason, "5.7.1")
        try:
            append_mbox(Path(target.value), envelope, data, target.address)
        except OSError as exc:
            reason = f"cannot append to file: {exc.strerror or exc}"
            return RecipientResult.deferred(target.address, reason, _dsn_for(exc))
        return RecipientResult.sent(target.address, "delivered to file")

    def _to_command(
        self, envelope: Envelope, data: bytes, orig_to: str, target: Target
    ) -> RecipientResult:
        if not _allowed(self.allow_commands, target.trusted):
            reason = "mail to command is restricted"
            return RecipientResult.bounced(target.address, reason, "5.7.1")
        try:
            argv = shlex.split(target.value)
        except ValueError:
            argv = []
        if not argv:
            return RecipientResult.bounced(target.address, "bad command", "5.3.5")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "SENDER": envelope.mail_from,
            "RECIPIENT": orig_to,
            "QUEUE_ID": envelope.queue_id,
        }
        copy = delivered_copy(envelope, data, target.address)
        try:
            done = subprocess.run(  # noqa: S603 - argv list from the admin's aliases
                argv,
                input=copy,
                env=env,
                capture_output=True,
                timeout=self.command_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return RecipientResult.deferred(target.address, "command timed out")
        except OSError as exc:
            reason = f"cannot run command: {exc.strerror or exc}"
            return RecipientResult.deferred(target.address, reason)
        if done.returncode == 0:
            return RecipientResult.sent(target.address, "delivered to command")
        reason = f"command failed with status {done.returncode}"
        if done.returncode == _EX_TEMPFAIL:
            return RecipientResult.deferred(target.address, reason, "4.3.0")
        return RecipientResult.bounced(target.address, reason, "5.3.0")

    def _log(
        self,
        envelope: Envelope,
        to: str,
        orig_to: str,
        result: RecipientResult,
        start: float,
    ) -> None:
        now = time.time()
        in_queue = max(0.0, start - envelope.arrival_time)
        delays = f"0/{format_delay(in_queue)}/0/{format_delay(now - start)}"
        orig = f", orig_to=<{orig_to}>" if orig_to.lower() != to.lower() else ""
        log.info(
            "%s: to=<%s>%s, relay=local, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
            envelope.queue_id,
            to,
            orig,
            format_delay(now - envelope.arrival_time),
            delays,
            result.dsn,
            result.status,
            result.reason,
        )


def _error_result(target: Target) -> RecipientResult:
    if target.dsn.startswith("4"):
        return RecipientResult.deferred(target.address, target.value, target.dsn)
    return RecipientResult.bounced(target.address, target.value, target.dsn)


def _dsn_for(exc: OSError) -> str:
    # RFC 3463: 4.3.1 mail system full, 4.2.0 other mailbox status
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "4.3.1"
    return "4.2.0"


def append_mbox(path: Path, envelope: Envelope, data: bytes, delivered_to: str) -> None:
    """Append one message to an mbox file under an fcntl lock, fsynced.

    Lines starting with "From " are quoted with ">" (mboxrd would quote
    ">From " too; postfix's local quotes only "From ").
    """
    copy = delivered_copy(envelope, data, delivered_to)
    if not copy.endswith(b"\n"):
        copy += b"\n"
    body = copy.replace(b"\nFrom ", b"\n>From ")
    if body.startswith(b"From "):
        body = b">" + body
    sender = envelope.mail_from or "MAILER-DAEMON"
    stamp = time.asctime(time.gmtime())
    record = f"From {_header_safe(sender)} {stamp}\n".encode("utf-8", "replace")
    record += body + b"\n"

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        view = memoryview(record)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
