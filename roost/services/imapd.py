"""The IMAP service: glue between the IMAP core, the mailstore and auth.

``ImapService(settings, userdb, mailstore).handle`` serves one connection
(roost.net contract).  Each session reads bytes into the sans-IO core
(``roost.protocols.imap``), takes typed commands out, runs them against
the user's ``UserStore`` and writes responses.  One handler per verb,
found through ``_HANDLERS``; errors are ``ImapError`` (or a
``MailstoreError`` turned into NO) and become replies in ``_dispatch``.

Untagged news from other sessions (EXISTS, EXPUNGE, FETCH FLAGS) is taken
from the session's ``MailboxView`` after each command, without EXPUNGE
after FETCH, STORE and SEARCH (RFC 3501 7.4.1, case 023), and pushed at
once during IDLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from roost.auth import AuthThrottle, sasl
from roost.mailstore import mime, names
from roost.mailstore.errors import MailstoreError
from roost.mailstore.mailbox import Mailbox, MailboxView, Message
from roost.mailstore.store import Mailstore, UserStore, create_user
from roost.net import Connection, IdleTimeout
from roost.protocols.imap import fetch as fetch_items
from roost.protocols.imap import search as search_eval
from roost.protocols.imap.commands import (
    Append,
    Authenticate,
    Command,
    Copy,
    Enable,
    Fetch,
    FetchAtt,
    Id,
    ListCommand,
    Login,
    MailboxCommand,
    Rename,
    Search,
    Section,
    Status,
    Store,
    UidExpunge,
)
from roost.protocols.imap.connection import (
    AuthResponse,
    ConnectionClosed,
    IdleDone,
    Limits,
    ServerConnection,
)
from roost.protocols.imap.errors import ImapError
from roost.protocols.imap.errors import Status as ImapStatus
from roost.protocols.imap.grammar import (
    astring,
    decode_mutf7,
    format_date_time,
    format_uid_set,
    literal,
    mailbox_name,
    quoted_or_literal,
)
from roost.protocols.imap.state import State

log = logging.getLogger("roost.imapd")

BASE_CAPABILITIES = (
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS "
    "MOVE CHILDREN SPECIAL-USE"
)
FETCH_BATCH_MESSAGES = 200
FETCH_BATCH_BYTES = 4 * 1024 * 1024
IDLE_POLL_S = 2.0  # rescan for other programs' deliveries while idling
# consecutive BAD replies before the session ends, as dovecot counts them
MAX_BAD_COMMANDS = 20
_TOO_MANY_ERRORS = b"* BYE Too many invalid commands\r\n"
_MAILBOX_DELETED = b"* BYE Selected mailbox was deleted\r\n"
_MAILBOX_RENAMED = b"* BYE Selected mailbox was renamed, please log in again\r\n"
PERMANENT_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*"


class _Settings(typing.Protocol):
    @property
    def mailbox_directory(self) -> Path: ...

    @property
    def myhostname(self) -> str: ...

    @property
    def message_size_limit(self) -> int: ...

    @property
    def imap_idle_timeout(self) -> int: ...


class _UserDB(typing.Protocol):
    async def averify(self, name: str, password: str) -> str | None: ...


class ImapService:
    """Serves IMAP4rev1 sessions; ``handle`` is the roost.net handler."""

    def __init__(
        self,
        settings: _Settings,
        userdb: _UserDB,
        mailstore: Mailstore | None = None,
        implicit_tls: bool = False,
        *,
        throttle: AuthThrottle | None = None,
    ) -> None:
        self.settings = settings
        self.userdb = userdb
        self.mailstore = mailstore or Mailstore(settings.mailbox_directory)
        self.implicit_tls = implicit_tls
        self.throttle = throttle or AuthThrottle()
        size_limit = settings.message_size_limit or 1024 * 1024 * 1024
        self.limits = Limits(max_append_bytes=size_limit)

    async def handle(self, conn: Connection) -> None:
        session = Session(self, conn)
        try:
            await session.run()
        finally:
            session.close_mailbox()


@dataclass(slots=True)
class _Selected:
    mailbox: Mailbox
    view: MailboxView


Handler = Callable[["Session", Command], Awaitable[str]]


class Session:
    """One IMAP connection."""

    def __init__(self, service: ImapService, conn: Connection) -> None:
        self.service = service
        self.conn = conn
        self.core = ServerConnection(service.limits)
        self.user: str | None = None
        self.store: UserStore | None = None
        self.selected: _Selected | None = None
        self.bad_count = 0  # invalid commands in a row
        self._core_bads_seen = (0, 0)
        self._out: list[bytes] = []
        self._read_task: asyncio.Task[bytes] | None = None

    # --- the command loop -------------------------------------------------

    async def run(self) -> None:
        self.conn.set_timeout(self.service.settings.imap_idle_timeout)
        log.info("connect from [%s]", self.conn.peer_ip)
        greeting = f"* OK [CAPABILITY {self.capabilities()}] Roost IMAP ready\r\n"
        await self.conn.write(greeting.encode("ascii"))
        try:
            await self._loop()
        except IdleTimeout:
            await self._write_quietly(b"* BYE Autologout; idle for too long\r\n")
        except (ConnectionError, OSError, _SessionEnded):
            pass
        finally:
            if self._read_task is not None:
                self._read_task.cancel()
        log.info("disconnect from [%s] user=%s", self.conn.peer_ip, self.user)

    async def _loop(self) -> None:
        while True:
            event = self.core.next_event()
            await self._flush_core()
            if isinstance(event, ConnectionClosed):
                return
            if event is None:
                self.core.receive_data(await self._read())
                continue
            # an IdleDone / AuthResponse outside its exchange cannot happen:
            # the core is in those modes only while their handler runs
            if isinstance(event, Command) and not await self._dispatch(event):
                return

    async def _read(self) -> bytes:
        if self._read_task is None:
            self._read_task = asyncio.ensure_future(self.conn.read())
        try:
            return await self._read_task
        finally:
            self._read_task = None

    async def _flush_core(self) -> None:
        data = self.core.data_to_send()
        if data:
            self._count_core_bads()
            await self.conn.write(data)
            await self._check_bad_count()
        if self.core.is_closed:
            raise _SessionEnded  # the core's BYE (line too long) is written

    def _count_core_bads(self) -> None:
        """Add the BADs the core gave by itself to the run of invalid
        commands.  Malformed literal counts do not count before login, as
        in dovecot's login process (case 016: a client that gets them
        wrong is answered BAD each time and may then log in); after
        login they do, as in dovecot's imap process."""
        seen_commands, seen_literals = self._core_bads_seen
        new = self.core.bad_commands - seen_commands
        if self.core.state is not State.NOT_AUTHENTICATED:
            new += self.core.bad_literals - seen_literals
        self._core_bads_seen = (self.core.bad_commands, self.core.bad_literals)
        self.bad_count += new

    async def _check_bad_count(self) -> None:
        """RFC 3501 7.1.5: a server that gives up says BYE, then closes."""
        if self.bad_count > MAX_BAD_COMMANDS:
            self.core.close()
            await self._write_quietly(_TOO_MANY_ERRORS)
            raise _SessionEnded

    async def _write_quietly(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.conn.write(data)

    def send(self, line: bytes) -> None:
        self._out.append(line)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            await self.conn.write(data)

    async def _dispatch(self, command: Command) -> bool:
        """Run one command; False when the session must end."""
        handler = _HANDLERS[command.name]
        is_bad = False
        await self._check_selected()
        try:
            text = await handler(self, command)
            await self._send_news(command)
            self.send(f"{command.tag} {text}\r\n".encode())
        except _AnsweredError:
            pass
        except ImapError as error:
            self._out.append(error.response(command.tag))
            is_bad = error.status is ImapStatus.BAD
        except MailstoreError as error:
            self._out.append(ImapError.no(error.text, error.code).response(command.tag))
        except (ConnectionError, OSError, IdleTimeout, _SessionEnded):
            raise
        except Exception:
            log.exception("session [%s] failed on %s", self.conn.peer_ip, command.name)
            self._out.append(b"* BYE [SERVERBUG] Internal error\r\n")
            await self.flush()
            return False
        await self.flush()
        if self.core.state is State.LOGOUT:
            return False
        # only a run of invalid commands ends the session: a well-formed
        # command (answered OK or NO) starts the count again
        self.bad_count = self.bad_count + 1 if is_bad else 0
        await self._check_bad_count()
        return True

    async def _send_news(self, command: Command) -> None:
        if self.selected is None:
            return
        uid = getattr(command, "uid", False)
        quiet = command.name in ("FETCH", "STORE", "SEARCH") and not uid
        if command.name in ("NOOP", "CHECK", "IDLE"):
            await self.refresh_selected()
        self._send_view_changes(allow_expunge=not quiet)

    async def refresh_selected(self) -> None:
        """Rescan the selected mailbox; BYE if it is gone from disk."""
        assert self.selected is not None
        mailbox = self.selected.mailbox
        try:
            await mailbox.refresh()
        except MailstoreError as error:
            if error.code != "NONEXISTENT":
                raise
            mailbox.mark_gone(mailbox.gone or "deleted")  # by another program
        await self._check_selected()

    async def _check_selected(self) -> None:
        """End the session when its selected mailbox was deleted or renamed
        (by any session, this one included), as dovecot does: RFC 3501
        leaves it open, and a view of a folder that is no longer there
        could only give stale or wrong answers."""
        if self.selected is None or not self.selected.mailbox.is_deleted:
            return
        gone = self.selected.mailbox.gone
        self.close_mailbox()
        self.core.close()
        if gone == "renamed":
            await self._write_quietly(_MAILBOX_RENAMED)
        else:
            await self._write_quietly(_MAILBOX_DELETED)
        raise _SessionEnded

    def _send_view_changes(self, allow_expunge: bool) -> None:
        assert self.selected is not None
        view = self.selected.view
        for kind, number, uid in view.drain(allow_expunge):
            if kind == "FLAGS":
                message = view.mailbox.get(uid)
                if message is None:
                    continue
                flags = fetch_items.format_flags(message.flags, uid in view.recent)
                self.send(b"* %d FETCH (FLAGS %s)\r\n" % (number, flags))
            else:
                self.send(f"* {number} {kind}\r\n".encode("ascii"))

    # --- capabilities and plaintext policy -----------------------------------

    def plaintext_allowed(self) -> bool:
        # as dovecot's disable_plaintext_auth: only over TLS or from loopback
        return self.conn.is_tls or self.conn.is_loopback

    def capabilities(self) -> str:
        caps = BASE_CAPABILITIES
        if self.core.state is State.NOT_AUTHENTICATED:
            if not self.conn.is_tls and getattr(self.conn, "tls_available", False):
                caps += " STARTTLS"
            caps += " AUTH=PLAIN" if self.plaintext_allowed() else " LOGINDISABLED"
        return caps

    def close_mailbox(self) -> None:
        if self.selected is not None:
            self.selected.mailbox.close_view(self.selected.view)
            self.selected = None

    def user_store(self) -> UserStore:
        assert self.store is not None
        return self.store

    def require_selected(self) -> _Selected:
        if self.selected is None:
            raise ImapError.bad("No mailbox selected")
        return self.selected


# --- any state ---------------------------------------------------------------


async def _on_capability(s: Session, cmd: Command) -> str:
    s.send(f"* CAPABILITY {s.capabilities()}\r\n".encode("ascii"))
    return "OK CAPABILITY completed"


async def _on_noop(s: Session, cmd: Command) -> str:
    return f"OK {cmd.name} completed"


async def _on_logout(s: Session, cmd: Command) -> str:
    s.send(b"* BYE Roost IMAP logging out\r\n")
    s.core.state = State.LOGOUT
    s.core.close()
    s.close_mailbox()
    return "OK LOGOUT completed"


async def _on_id(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Id)
    s.send(b'* ID ("name" "Roost")\r\n')  # RFC 2971: no version, by design
    return "OK ID completed"


# --- not authenticated -------------------------------------------------------


async def _on_starttls(s: Session, cmd: Command) -> str:
    if s.conn.is_tls or not getattr(s.conn, "tls_available", False):
        raise ImapError.bad("TLS not available")
    # RFC 3501 6.2.1: bytes after STARTTLS in plaintext are dropped (case 003)
    s.core.discard_input()
    await s.flush()
    await s.conn.start_tls(f"{cmd.tag} OK Begin TLS negotiation now\r\n".encode())
    s.core.discard_input()
    raise _AnsweredError


class _SessionEnded(Exception):  # noqa: N818 (reads as the condition)
    """A BYE was sent (too many invalid commands, line too long): end."""


class _AnsweredError(Exception):
    """Not an error: a handler wrote its own tagged reply (STARTTLS)."""


async def _on_login(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Login)
    if not s.plaintext_allowed():
        raise ImapError.no("Plaintext authentication disallowed", "PRIVACYREQUIRED")
    try:
        name = cmd.user.decode("utf-8")
        password = cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        raise ImapError.no("Authentication failed", "AUTHENTICATIONFAILED") from None
    user = None
    if name and password:
        user = await sasl.authenticate(
            s.service.userdb, sasl.Credentials("", name, password)
        )
    return await _finish_login(s, user, name)


async def _on_authenticate(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Authenticate)
    if cmd.mechanism != "PLAIN":
        raise ImapError.no("Unsupported authentication mechanism")
    if not s.plaintext_allowed():
        raise ImapError.no("Plaintext authentication disallowed", "PRIVACYREQUIRED")
    exchange = sasl.Exchange("PLAIN")
    response = cmd.initial_response
    try:
        while True:
            step = exchange.step(response)
            if isinstance(step, sasl.Credentials):
                break
            s.send(b"+ " + step + b"\r\n")
            await s.flush()
            response = await _auth_response(s)
    except sasl.SaslError as error:
        if error.failure is sasl.Failure.MALFORMED:
            log.info("[%s]: malformed AUTHENTICATE PLAIN", s.conn.peer_ip)
            return await _finish_login(s, None, "")
        raise ImapError.bad("Authentication aborted or not base64") from None
    user = await sasl.authenticate(s.service.userdb, step)
    return await _finish_login(s, user, step.authcid)


async def _auth_response(s: Session) -> bytes:
    s.core.expect_auth_response()
    while True:
        event = s.core.next_event()
        await s._flush_core()
        if isinstance(event, AuthResponse):
            return event.data
        if isinstance(event, ConnectionClosed):
            raise ConnectionError("closed during AUTHENTICATE")
        if event is None:
            s.core.receive_data(await s._read())


async def _finish_login(s: Session, user: str | None, name: str) -> str:
    throttle = s.service.throttle
    keys = (f"ip:{s.conn.peer_ip}", f"user:{name.lower()}")
    if user is None:
        throttle.record_failure(*keys)
        delay = throttle.delay_s(*keys)
        if delay:
            await asyncio.sleep(delay)  # slows guessing; other sessions go on
        log.info("[%s]: authentication failed", s.conn.peer_ip)
        raise ImapError.no("Authentication failed", "AUTHENTICATIONFAILED")
    throttle.record_success(*keys)
    settings = s.service.settings
    await asyncio.to_thread(create_user, settings, user)
    s.user = user
    s.store = s.service.mailstore.user(user)
    s.core.state = State.AUTHENTICATED
    log.info("[%s]: user=%s, authenticated", s.conn.peer_ip, user)
    return f"OK [CAPABILITY {s.capabilities()}] Logged in"


# --- authenticated -----------------------------------------------------------


async def _on_select(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, MailboxCommand)
    s.close_mailbox()
    s.core.state = State.AUTHENTICATED
    readonly = cmd.name == "EXAMINE"
    mailbox = await s.user_store().mailbox(cmd.mailbox)
    view = mailbox.open_view(readonly)
    s.selected = _Selected(mailbox, view)
    s.core.state = State.SELECTED

    keywords = " ".join(mailbox.keywords)
    flags = f"\\Answered \\Flagged \\Deleted \\Seen \\Draft {keywords}".strip()
    s.send(f"* FLAGS ({flags})\r\n".encode())
    s.send(f"* {len(view.uids)} EXISTS\r\n".encode())
    s.send(f"* {len(view.recent)} RECENT\r\n".encode())
    unseen = next(
        (
            i + 1
            for i, u in enumerate(view.uids)
            if "\\Seen" not in _flags_of(mailbox, u)
        ),
        None,
    )
    if unseen is not None:
        s.send(f"* OK [UNSEEN {unseen}] First unseen\r\n".encode())
    s.send(f"* OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid\r\n".encode())
    s.send(f"* OK [UIDNEXT {mailbox.uidnext}] Predicted next UID\r\n".encode())
    permanent = "" if readonly else f"{PERMANENT_FLAGS} {keywords}".strip()
    s.send(f"* OK [PERMANENTFLAGS ({permanent})] Limited\r\n".encode())
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return f"OK [{mode}] {cmd.name} completed"


def _flags_of(mailbox: Mailbox, uid: int) -> frozenset[str]:
    message = mailbox.get(uid)
    return message.flags if message else frozenset()


async def _on_create(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, MailboxCommand)
    await s.user_store().create(cmd.mailbox)
    return "OK CREATE completed"


async def _on_delete(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, MailboxCommand)
    store = s.user_store()
    if s.selected is not None and s.selected.mailbox.path == store.path_of(cmd.mailbox):
        s.close_mailbox()
        s.core.state = State.AUTHENTICATED
    await store.delete(cmd.mailbox)
    return "OK DELETE completed"


async def _on_rename(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Rename)
    await s.user_store().rename(cmd.old, cmd.new)
    return "OK RENAME completed"


async def _on_subscribe(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, MailboxCommand)
    await s.user_store().subscribe(cmd.mailbox, cmd.name == "SUBSCRIBE")
    return f"OK {cmd.name} completed"


async def _on_list(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, ListCommand)
    verb = cmd.name if cmd.name == "LSUB" else "LIST"
    if not cmd.pattern:
        # RFC 3501 6.3.8: an empty pattern asks for the delimiter
        s.send(f'* {verb} (\\Noselect) "/" ""\r\n'.encode())
        return f"OK {cmd.name} completed"
    pattern = _list_pattern(cmd.reference, cmd.pattern)
    if pattern is None:
        return f"OK {cmd.name} completed"
    store = s.user_store()
    folders = await store.folders()
    subscribed = set(await store.subscriptions())
    for folder in folders:
        if not _pattern_matches(pattern, folder.name):
            continue
        attrs = list(folder.attributes)
        if cmd.subscribed_only and folder.name not in subscribed:
            continue
        if cmd.special_use_only and not any(
            a in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk") for a in attrs
        ):
            continue
        if cmd.name == "LSUB":
            attrs = [a for a in attrs if a == "\\Noselect"]
        elif folder.name in subscribed and cmd.subscribed_only:
            attrs.append("\\Subscribed")
        line = f'* {verb} ({" ".join(attrs)}) "/" '.encode() + mailbox_name(folder.name)
        s.send(line + b"\r\n")
    return f"OK {cmd.name} completed"


def _list_pattern(reference: str, pattern: str) -> str | None:
    """Join reference and pattern (RFC 3501 6.3.8); None if it can match
    nothing we would show (a reference outside the user's names)."""
    try:
        reference = decode_mutf7(reference.encode("ascii"))
        pattern = decode_mutf7(pattern.encode("ascii"))
    except ValueError:
        return None
    if pattern.startswith("/"):
        return None
    if reference and not reference.endswith("/"):
        reference += "/"
    return reference + pattern


def _pattern_matches(pattern: str, name: str) -> bool:
    """``*`` matches anything, ``%`` anything but the separator; INBOX is
    matched case-insensitively.  Iterative, so no pattern can explode."""
    if pattern.upper().startswith("INBOX") and name.startswith("INBOX"):
        pattern = "INBOX" + pattern[5:]
    # dynamic programming over (pattern index, name index)
    reachable = {0}
    for char in pattern:
        nxt: set[int] = set()
        for i in sorted(reachable):
            if char == "*":
                nxt.update(range(i, len(name) + 1))
            elif char == "%":
                j = i
                nxt.add(j)
                while j < len(name) and name[j] != "/":
                    j += 1
                    nxt.add(j)
            elif i < len(name) and name[i] == char:
                nxt.add(i + 1)
        reachable = nxt
        if not reachable:
            return False
    return len(name) in reachable


async def _on_status(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Status)
    status = await s.user_store().status(cmd.mailbox)
    values = {
        "MESSAGES": status.messages,
        "RECENT": status.recent,
        "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity,
        "UNSEEN": status.unseen,
        "SIZE": status.size,
    }
    items = " ".join(f"{item} {values[item]}" for item in cmd.items)
    s.send(b"* STATUS " + mailbox_name(cmd.mailbox) + f" ({items})\r\n".encode())
    return "OK STATUS completed"


async def _on_append(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Append)
    store = s.user_store()
    if not await store.exists(cmd.mailbox) and cmd.mailbox != names.INBOX:
        raise ImapError.no("Mailbox does not exist", "TRYCREATE")
    if not cmd.message:
        raise ImapError.no("Empty message")
    mailbox = await store.mailbox(cmd.mailbox)
    date = cmd.date_time.timestamp() if cmd.date_time else None
    flags = frozenset(f for f in cmd.flags if f != "\\Recent")
    # stored with LF like local delivery; served with CRLF (case 026)
    uid = await mailbox.append(mime.to_lf(cmd.message), flags, date)
    log.info("[%s]: user=%s, appended uid=%d", s.conn.peer_ip, s.user, uid)
    return f"OK [APPENDUID {mailbox.uidvalidity} {uid}] APPEND completed"


async def _on_namespace(s: Session, cmd: Command) -> str:
    s.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return "OK NAMESPACE completed"


async def _on_enable(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Enable)
    s.send(b"* ENABLED\r\n")  # none of the ENABLE-able extensions yet
    return "OK ENABLE completed"


async def _on_idle(s: Session, cmd: Command) -> str:
    s.send(b"+ idling\r\n")
    if s.selected is not None:
        s._send_view_changes(allow_expunge=True)
    await s.flush()
    s.core.start_idle()
    while True:
        event = s.core.next_event()
        await s._flush_core()
        if isinstance(event, IdleDone):
            if not event.is_done:
                raise ImapError.bad("Expected DONE")
            return "OK IDLE terminated"
        if isinstance(event, ConnectionClosed):
            raise ConnectionError("closed during IDLE")
        s.core.receive_data(await _idle_wait(s))


async def _idle_wait(s: Session) -> bytes:
    """Wait for client bytes, pushing other sessions' changes meanwhile."""
    deadline = time.monotonic() + s.service.settings.imap_idle_timeout
    while True:
        if s._read_task is None:
            s._read_task = asyncio.ensure_future(s.conn.read())
        waiters: set[asyncio.Future[object]] = {s._read_task}  # type: ignore[arg-type]
        changed = None
        if s.selected is not None:
            changed = asyncio.ensure_future(s.selected.view.changed.wait())
            waiters.add(changed)  # type: ignore[arg-type]
        await asyncio.wait(
            waiters, timeout=IDLE_POLL_S, return_when=asyncio.FIRST_COMPLETED
        )
        if changed is not None and not changed.done():
            changed.cancel()
        if s._read_task.done():
            task, s._read_task = s._read_task, None
            return task.result()
        if time.monotonic() > deadline:
            raise IdleTimeout
        if s.selected is not None:
            await s.refresh_selected()
            s._send_view_changes(allow_expunge=True)
            await s.flush()


# --- selected ----------------------------------------------------------------


async def _on_check(s: Session, cmd: Command) -> str:
    return "OK CHECK completed"


async def _on_close(s: Session, cmd: Command) -> str:
    selected = s.require_selected()
    if cmd.name == "CLOSE" and not selected.view.readonly:
        # RFC 3501 6.4.2: expunge silently
        deleted = [m.uid for m in selected.mailbox.messages() if "\\Deleted" in m.flags]
        await selected.mailbox.expunge(deleted)
    s.close_mailbox()
    s.core.state = State.AUTHENTICATED
    return f"OK {cmd.name} completed"


async def _on_expunge(s: Session, cmd: Command) -> str:
    selected = s.require_selected()
    if selected.view.readonly:
        raise ImapError.no("Mailbox is read-only", "READ-ONLY")
    uids = None
    if isinstance(cmd, UidExpunge):
        uids = set(selected.view.resolve(cmd.sequence_set, True))
    deleted = [
        m.uid
        for m in selected.mailbox.messages()
        if "\\Deleted" in m.flags
        and (uids is None or m.uid in uids)
        and selected.view.seq_of(m.uid) is not None
    ]
    await selected.mailbox.expunge(deleted)
    return f"OK {'UID ' if uids is not None else ''}EXPUNGE completed"


async def _on_store(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Store)
    selected = s.require_selected()
    if selected.view.readonly:
        raise ImapError.no("Mailbox is read-only", "READ-ONLY")
    uids = selected.view.resolve(cmd.sequence_set, cmd.uid)
    flags = frozenset(cmd.flags)
    result = await selected.mailbox.store(uids, cmd.mode, flags, selected.view)
    if not cmd.silent:
        for uid in uids:
            if uid not in result:
                continue
            seq = selected.view.seq_of(uid)
            items = b"FLAGS " + fetch_items.format_flags(
                result[uid], uid in selected.view.recent
            )
            if cmd.uid:
                items = b"UID %d " % uid + items
            s.send(b"* %d FETCH (%s)\r\n" % (seq or 0, items))
    return f"OK {'UID ' if cmd.uid else ''}STORE completed"


async def _on_copy(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Copy)
    selected = s.require_selected()
    store = s.user_store()
    if not await store.exists(cmd.mailbox):
        raise ImapError.no("Mailbox does not exist", "TRYCREATE")
    is_move = cmd.name == "MOVE"
    if is_move and selected.view.readonly:
        raise ImapError.no("Mailbox is read-only", "READ-ONLY")
    uids = selected.view.resolve(cmd.sequence_set, cmd.uid)
    target = await store.mailbox(cmd.mailbox)
    if target is selected.mailbox and is_move:
        return "OK MOVE completed"  # moving into itself changes nothing
    pairs = await selected.mailbox.copy_to(uids, target)
    prefix = "UID " if cmd.uid else ""
    code = ""
    if pairs:
        sources = format_uid_set(p[0] for p in pairs)
        made = format_uid_set(p[1] for p in pairs)
        code = f"[COPYUID {target.uidvalidity} {sources} {made}] "
    if is_move:
        # RFC 6851 4.3: COPYUID comes untagged before the EXPUNGEs
        if code:
            s.send(f"* OK {code.strip()} Moved\r\n".encode())
        await selected.mailbox.expunge([p[0] for p in pairs])
        return f"OK {prefix}MOVE completed"
    return f"OK {code}{prefix}COPY completed"


async def _on_search(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Search)
    selected = s.require_selected()
    view = selected.view
    # the session's numbering as it stands now; the walk runs in a thread
    uids, recent = list(view.uids), set(view.recent)
    found = await asyncio.to_thread(_search_all, selected.mailbox, cmd, uids, recent)
    numbers = " ".join(str(n) for n in found)
    s.send(f"* SEARCH{' ' if numbers else ''}{numbers}\r\n".encode("ascii"))
    return f"OK {'UID ' if cmd.uid else ''}SEARCH completed"


class _Candidate:
    """One message as search.matches sees it; slow parts on demand."""

    __slots__ = ("_mailbox", "_message", "seq", "uid", "flags", "is_recent", "size")

    def __init__(self, mailbox: Mailbox, seq: int, message: Message, recent: bool):
        self._mailbox = mailbox
        self._message = message
        self.seq = seq
        self.uid = message.uid
        self.flags = message.flags
        self.is_recent = recent
        self.size = message.size

    @property
    def internaldate(self) -> dt.datetime:
        return _internal_datetime(self._message)

    def headers(self) -> list[tuple[str, bytes]]:
        return self._mailbox.headers(self._message)

    def header_values(self, name: str) -> list[bytes]:
        return self._mailbox.header_values(self._message, name)

    def message(self) -> tuple[bytes, mime.Part]:
        return self._mailbox.parsed(self._message)


def _search_all(
    mailbox: Mailbox, cmd: Search, uids: list[int], recent: set[int]
) -> list[int]:
    found: list[int] = []
    largest_seq = len(uids)
    largest_uid = uids[-1] if uids else 0
    for seq, uid in enumerate(uids, 1):
        message = mailbox.get(uid)
        if message is None:
            continue  # expunged by another session: cannot match
        candidate = _Candidate(mailbox, seq, message, uid in recent)
        try:
            hit = search_eval.matches(cmd.key, candidate, largest_seq, largest_uid)
        except MailstoreError:
            continue
        if hit:
            found.append(uid if cmd.uid else seq)
    return found


def _internal_datetime(message: Message) -> dt.datetime:
    return dt.datetime.fromtimestamp(message.internaldate, dt.UTC).astimezone()


# --- FETCH -------------------------------------------------------------------


async def _on_fetch(s: Session, cmd: Command) -> str:
    assert isinstance(cmd, Fetch)
    selected = s.require_selected()
    view = selected.view
    uids = view.resolve(cmd.sequence_set, cmd.uid)
    sets_seen = not view.readonly and any(
        att.name in ("RFC822", "RFC822.TEXT")
        or (att.name == "BODY" and att.section and not att.peek)
        for att in cmd.items
    )
    if sets_seen:
        unseen = [
            u
            for u in uids
            if (m := selected.mailbox.get(u)) is not None and "\\Seen" not in m.flags
        ]
        if unseen:
            await selected.mailbox.store(unseen, "+", frozenset({"\\Seen"}), view)
    missing = False
    batches = _batches(selected.mailbox, uids)
    for number, batch in enumerate(batches, 1):
        work = [
            (view.seq_of(u) or 0, u, selected.mailbox.get(u), u in view.recent)
            for u in batch
        ]
        try:
            # all in memory (flags, cached ENVELOPE or octets): no thread hop
            lines, gone = _render_fetch(selected.mailbox, cmd, work, sets_seen, True)
        except _NotInMemory:
            lines, gone = await asyncio.to_thread(
                _render_fetch, selected.mailbox, cmd, work, sets_seen, False
            )
        missing |= gone
        for line in lines:
            s.send(line)
        if number < len(batches):
            await s.flush()  # the last batch leaves with the tagged reply
    if missing:
        # RFC 2180 4.1.2 / RFC 5530: another session expunged some of them
        raise ImapError.no("Some messages were expunged", "EXPUNGEISSUED")
    return f"OK {'UID ' if cmd.uid else ''}FETCH completed"


def _batches(mailbox: Mailbox, uids: list[int]) -> list[list[int]]:
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for uid in uids:
        message = mailbox.get(uid)
        current.append(uid)
        size += message.size if message else 0
        if len(current) >= FETCH_BATCH_MESSAGES or size >= FETCH_BATCH_BYTES:
            batches.append(current)
            current, size = [], 0
    if current:
        batches.append(current)
    return batches


class _NotInMemory(Exception):  # noqa: N818 (reads as the condition)
    """A memory-only FETCH rendering met data that must be read from disk."""


def _render_fetch(
    mailbox: Mailbox,
    cmd: Fetch,
    work: list[tuple[int, int, Message | None, bool]],
    sets_seen: bool,
    memory_only: bool,
) -> tuple[list[bytes], bool]:
    """The FETCH responses of a batch.  With ``memory_only`` nothing is
    read from disk (the loop calls it so): ``_NotInMemory`` instead."""
    lines: list[bytes] = []
    missing = False
    for seq, _uid, message, recent in work:
        if message is None:
            missing = True
            continue
        try:
            items = _fetch_items(
                mailbox, cmd.items, message, recent, sets_seen, memory_only
            )
        except MailstoreError:
            missing = True
            continue
        lines.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
    return lines, missing


def _fetch_items(
    mailbox: Mailbox,
    atts: tuple[FetchAtt, ...],
    message: Message,
    recent: bool,
    seen_set: bool,
    memory_only: bool,
) -> list[bytes]:
    current = mailbox.get(message.uid) or message
    lazy = _LazyMessage(mailbox, current, memory_only)
    items = [_fetch_item(att, current, recent, lazy) for att in atts]
    if seen_set and not any(att.name == "FLAGS" for att in atts):
        # the implicit \Seen is reported, as RFC 3501 6.4.5 expects
        items.append(_fetch_item(FetchAtt("FLAGS"), current, recent, lazy))
    return items


class _LazyMessage:
    """Reads and parses a message only when an item needs its octets;
    with ``memory_only`` it takes them from the caches or raises
    ``_NotInMemory``."""

    def __init__(self, mailbox: Mailbox, message: Message, memory_only: bool):
        self.mailbox = mailbox
        self.message = message
        self.memory_only = memory_only
        self._top: tuple[bytes, mime.Part] | None = None

    def parsed(self) -> tuple[bytes, mime.Part]:
        if not self.memory_only:
            return self.mailbox.parsed(self.message)
        hit = self.mailbox.cached_parsed(self.message)
        if hit is None:
            raise _NotInMemory
        return hit

    def top_level(self) -> tuple[bytes, mime.Part]:
        """The octets and the message as one entity (no MIME walk)."""
        if self._top is None:
            if self.memory_only:
                data = self.mailbox.cached_served(self.message)
                if data is None:
                    raise _NotInMemory
            else:
                data = self.mailbox.served(self.message)
            self._top = (data, mime.top_level(data))
        return self._top

    def envelope(self) -> bytes:
        if self.memory_only:
            hit = self.mailbox.cached_derived(self.message, "envelope")
            if hit is None:
                raise _NotInMemory
            return hit

        def compute() -> bytes:
            headers = self.mailbox.headers(self.message)
            return fetch_items.envelope(mime.Part(0, 0, 0, headers))

        return self.mailbox.derived(self.message, "envelope", compute)


def _fetch_item(
    att: FetchAtt, message: Message, recent: bool, lazy: _LazyMessage
) -> bytes:
    name = att.name
    if name == "UID":
        return b"UID %d" % message.uid
    if name == "FLAGS":
        return b"FLAGS " + fetch_items.format_flags(message.flags, recent)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_date_time(_internal_datetime(message))
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % message.size
    if name == "ENVELOPE":
        return b"ENVELOPE " + lazy.envelope()
    if name == "BODYSTRUCTURE":
        data, root = lazy.parsed()
        return b"BODYSTRUCTURE " + fetch_items.body_structure(data, root, True)
    if name == "BODY" and att.section is None:
        data, root = lazy.parsed()
        return b"BODY " + fetch_items.body_structure(data, root, False)
    # sections of the message itself need no MIME walk (BODY.PEEK[] most)
    top = name in _RFC822_SECTIONS or (att.section is not None and not att.section.part)
    data, root = lazy.top_level() if top else lazy.parsed()
    if name in _RFC822_SECTIONS:
        section = Section((), _RFC822_SECTIONS[name])
        content = fetch_items.section_bytes(data, root, section)
        return name.encode("ascii") + b" " + literal(content or b"")
    assert att.section is not None
    content = fetch_items.section_bytes(data, root, att.section)
    return fetch_items.body_item(att, content)


_RFC822_SECTIONS = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}


_HANDLERS: dict[str, Handler] = {
    "CAPABILITY": _on_capability,
    "NOOP": _on_noop,
    "LOGOUT": _on_logout,
    "ID": _on_id,
    "STARTTLS": _on_starttls,
    "LOGIN": _on_login,
    "AUTHENTICATE": _on_authenticate,
    "SELECT": _on_select,
    "EXAMINE": _on_select,
    "CREATE": _on_create,
    "DELETE": _on_delete,
    "RENAME": _on_rename,
    "SUBSCRIBE": _on_subscribe,
    "UNSUBSCRIBE": _on_subscribe,
    "LIST": _on_list,
    "LSUB": _on_list,
    "STATUS": _on_status,
    "APPEND": _on_append,
    "NAMESPACE": _on_namespace,
    "ENABLE": _on_enable,
    "IDLE": _on_idle,
    "CHECK": _on_check,
    "CLOSE": _on_close,
    "UNSELECT": _on_close,
    "EXPUNGE": _on_expunge,
    "SEARCH": _on_search,
    "FETCH": _on_fetch,
    "STORE": _on_store,
    "COPY": _on_copy,
    "MOVE": _on_copy,
}

__all__ = ["ImapService", "Session", "astring", "quoted_or_literal"]
