"""POP3 service: glue between the POP3 core, auth and the maildrop.

`Pop3Service(settings, userdb).handle` is the session coroutine the
listener runs for each connection (port 110; with implicit_tls=True on
995). One `_Session` per connection pumps bytes into the sans-IO core
and turns its events into auth and maildrop calls, one handler per verb.
`Pop3Error` raised anywhere in a handler becomes the `-ERR` reply in
`_command_loop`, the one place errors turn into bytes.

Disk work (the Maildir snapshot, sizes, reading messages, commit) runs
in worker threads, never on the event loop. RETR and TOP stream the
file in chunks through the dot-stuffer, so a large message costs only
a chunk of memory.

Read-ahead. A trip to a worker thread costs more than reading a small
message, and clients mostly RETR 1, 2, 3, ... in order. So when a RETR
follows the previous one in order, the same trip also reads the next
messages, whole, up to a byte budget that doubles with each such trip
(`AHEAD_FIRST_BYTES` to `AHEAD_MAX_BYTES`); their RETRs are then
answered from memory. Only with the exclusive session lock: then no
other POP3 session removes a message; a message another program
removes after it was read ahead is served as if RETR had come first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from roost.auth import AuthThrottle, UserDB, sasl
from roost.config import Settings
from roost.mailstore import maildir as md
from roost.mailstore.pop3drop import (
    READ_CHUNK_BYTES,
    CommitResult,
    DropMessage,
    Maildrop,
    MaildropError,
    MaildropInUse,
    MessageDeleted,
    MessageGone,
    NoSuchMessage,
    TopFilter,
)
from roost.net import Connection, IdleTimeout
from roost.protocols.pop3 import (
    DotStuffer,
    Pop3Error,
    Pop3Server,
    RespCode,
    State,
    events,
    multiline,
    ok_line,
)

log = logging.getLogger("roost.pop3d")

# Read-ahead budget per trip to the disk, and most messages per trip.
AHEAD_FIRST_BYTES = 32 * 1024
AHEAD_MAX_BYTES = 256 * 1024
AHEAD_MAX_MESSAGES = 128

_DROP_ERRORS: dict[type[MaildropError], str] = {
    NoSuchMessage: "No such message",
    MessageDeleted: "Message is deleted",
    MessageGone: "Message no longer exists",
}


def plaintext_auth_allowed(*, is_tls: bool, is_loopback: bool) -> bool:
    """May a password travel on this connection? (dovecot's
    disable_plaintext_auth = yes, with loopback counted as secure)."""
    return is_tls or is_loopback


class Pop3Service:
    """The POP3 server; `handle` is the listener's session coroutine.

    `throttle` slows password guessing per client address and per
    account (case 015); pass one with a short delay in tests.
    `lock_session`: one POP3 session per maildrop, a second one gets
    `-ERR [IN-USE]` (RFC 1939 §4). False lets sessions share it, each
    with its own snapshot, as dovecot's default pop3_lock_session = no.
    """

    def __init__(
        self,
        settings: Settings,
        userdb: UserDB | sasl.Verifier,
        implicit_tls: bool = False,
        *,
        throttle: AuthThrottle | None = None,
        lock_session: bool = True,
    ) -> None:
        self.settings = settings
        self.userdb = userdb
        self.implicit_tls = implicit_tls
        self.throttle = throttle if throttle is not None else AuthThrottle()
        self.lock_session = lock_session

    async def handle(self, conn: Connection) -> None:
        """Run one POP3 session on `conn` until QUIT, EOF or timeout."""
        await _Session(self, conn).run()


class _StreamError(Exception):
    """A message could not be read after its +OK went out."""


class _Session:
    def __init__(self, service: Pop3Service, conn: Connection) -> None:
        self.service = service
        self.conn = conn
        self.core = Pop3Server(
            is_tls=conn.is_tls,
            tls_available=_tls_available(conn),
            plaintext_auth_allowed=plaintext_auth_allowed(
                is_tls=conn.is_tls,
                is_loopback=conn.is_loopback,
            ),
        )
        self.drop: Maildrop | None = None
        self.user: str | None = None
        self.sasl: sasl.Exchange | None = None
        self.counts = {"top": 0, "retr": 0, "retr_bytes": 0, "del": 0}
        # Read ahead: number -> (served size, contents); see the module note.
        self._ahead: dict[int, tuple[int, bytes]] = {}
        self._ahead_budget = AHEAD_FIRST_BYTES
        self._last_retr = 0
        self._handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "USER": self._on_user,
            "PASS": self._on_pass,
            "AUTH": self._on_auth,
            "SASL-RESPONSE": self._on_sasl_response,
            "STLS": self._on_stls,
            "CAPA": self._on_capa,
            "QUIT": self._on_quit,
            "STAT": self._on_stat,
            "LIST": self._on_list,
            "UIDL": self._on_uidl,
            "RETR": self._on_retr,
            "TOP": self._on_top,
            "DELE": self._on_dele,
            "NOOP": self._on_noop,
            "RSET": self._on_rset,
        }

    # -- the command loop -----------------------------------------------

    async def run(self) -> None:
        conn = self.conn
        log.info(
            "%s: connect from [%s]:%d, tls=%s",
            conn.conn_id,
            conn.peer_ip,
            conn.peer_port,
            _yes_no(conn.is_tls),
        )
        conn.set_timeout(self.service.settings.pop3_timeout)
        reason = "connection lost"
        try:
            await conn.write(self.core.greeting())
            reason = await self._command_loop()
        finally:
            if self.drop is not None:
                await asyncio.to_thread(self.drop.release)
            self._log_disconnect(reason)
        await conn.close()

    async def _command_loop(self) -> str:
        """Run commands until the session ends; returns why it ended."""
        while True:
            try:
                event = self.core.next_event()
                if event is None:
                    if not await self._receive():
                        return "idle timeout"
                    continue
                if isinstance(event, events.ConnectionClosed):
                    return "disconnected"
                await self._dispatch(event)
            except Pop3Error as err:
                await self.conn.write(err.to_bytes())
                if err.is_fatal:
                    return err.text.lower()
            except _StreamError:
                return "read error"
            if self.core.is_closing:
                return "logout"

    async def _receive(self) -> bool:
        try:
            data = await self.conn.read()
        except IdleTimeout:
            # RFC 1939 §3: an autologout timer; no UPDATE state.
            err = Pop3Error("Disconnected for inactivity")
            await self.conn.write(err.to_bytes())
            return False
        self.core.receive_data(data)
        return True

    async def _dispatch(self, event: events.Event) -> None:
        handler = self._handlers[event.verb]
        try:
            await handler(event)
        except MaildropError as exc:
            text = _DROP_ERRORS.get(type(exc))
            if text is None:
                raise
            raise Pop3Error(text) from None
        except (Pop3Error, _StreamError, ConnectionError):
            raise
        except Exception:
            # Our bug, not theirs: log it, tell the client, carry on.
            log.exception("%s: %s failed", self.conn.conn_id, event.verb)
            raise Pop3Error("Internal error", RespCode.SYS_TEMP) from None

    async def _reply(self, data: bytes) -> None:
        await self.conn.write(data)

    # -- AUTHORIZATION ----------------------------------------------------

    async def _on_user(self, event: events.User) -> None:
        # Same answer whether or not the user exists (no oracle).
        await self._reply(ok_line())

    async def _on_pass(self, event: events.Pass) -> None:
        creds = sasl.Credentials("", event.name, event.password)
        await self._login(creds, "USER")

    async def _on_auth(self, event: events.Auth) -> None:
        if event.mechanism is None:
            await self._reply(self.core.mechanism_list())
            return
        self.sasl = sasl.Exchange(event.mechanism)
        if event.initial_response is None:
            challenge = self.sasl.step(None)
            assert isinstance(challenge, bytes)
            await self._reply(self.core.sasl_challenge(event.mechanism, challenge))
            return
        await self._sasl_step(event.initial_response)

    async def _on_sasl_response(self, event: events.SaslResponse) -> None:
        await self._sasl_step(event.data)

    async def _sasl_step(self, response: bytes) -> None:
        exchange = self.sasl
        assert exchange is not None
        try:
            result = exchange.step(response)
        except sasl.SaslError as exc:
            self.sasl = None
            await self._sasl_failed(exc, exchange.mechanism)
            return
        if isinstance(result, bytes):
            await self._reply(self.core.sasl_challenge(exchange.mechanism, result))
            return
        self.sasl = None
        await self._login(result, exchange.mechanism)

    async def _sasl_failed(self, exc: sasl.SaslError, mechanism: str) -> None:
        failure = exc.failure
        if failure is sasl.Failure.BASE64:
            raise Pop3Error("Cannot decode response")
        if failure is sasl.Failure.ABORTED:
            raise Pop3Error("Authentication aborted by client")
        if failure is sasl.Failure.MECHANISM:
            raise Pop3Error("Unsupported authentication mechanism")
        # RFC 4616 §2: malformed PLAIN fails like a wrong password.
        log.info(
            "%s: authentication failed: method=%s, rip=%s, reason=malformed",
            self.conn.conn_id,
            mechanism,
            self.conn.peer_ip,
        )
        self.service.throttle.record_failure(self._ip_key())
        raise self.core.auth_failure()

    async def _login(self, creds: sasl.Credentials, method: str) -> None:
        throttle = self.service.throttle
        keys = (self._ip_key(), "user:" + creds.authcid.lower())
        delay_s = throttle.delay_s(*keys)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        user = await sasl.authenticate(self.service.userdb, creds)
        if user is None:
            throttle.record_failure(*keys)
            log.info(
                "%s: authentication failed: user=<%s>, method=%s, rip=%s",
                self.conn.conn_id,
                _printable(creds.authcid),
                method,
                self.conn.peer_ip,
            )
            raise self.core.auth_failure()
        throttle.record_success(*keys)
        self.drop = await self._open_maildrop(user)
        self.user = user
        self.core.logged_in()
        log.info(
            "%s: login: user=<%s>, method=%s, rip=%s, tls=%s",
            self.conn.conn_id,
            user,
            method,
            self.conn.peer_ip,
            _yes_no(self.core.is_tls),
        )
        await self._reply(ok_line("Logged in"))

    async def _open_maildrop(self, user: str) -> Maildrop:
        settings = self.service.settings
        path = md.mailbox_path(settings.mailbox_directory, user)
        exclusive = self.service.lock_session
        try:
            return await asyncio.to_thread(Maildrop.open, path, exclusive=exclusive)
        except MaildropInUse:
            log.info("%s: maildrop in use: user=<%s>", self.conn.conn_id, user)
            # RFC 2449 §8.1.2; RFC 1939 §4: stay in AUTHORIZATION.
            raise Pop3Error(
                "Mailbox is locked by another POP3 session",
                RespCode.IN_USE,
            ) from None
        except OSError:
            log.exception("%s: cannot open maildrop of %s", self.conn.conn_id, user)
            raise Pop3Error("Cannot open mailbox", RespCode.SYS_TEMP) from None

    async def _on_stls(self, event: events.Stls) -> None:
        await self._reply(self.core.stls_ok())
        await self.conn.start_tls()
        self.core.tls_started(
            plaintext_auth_allowed=plaintext_auth_allowed(
                is_tls=True,
                is_loopback=self.conn.is_loopback,
            ),
        )
        log.info("%s: starttls: tls=yes", self.conn.conn_id)

    async def _on_capa(self, event: events.Capa) -> None:
        await self._reply(self.core.capabilities())

    async def _on_quit(self, event: events.Quit) -> None:
        if self.core.state is not State.UPDATE or self.drop is None:
            await self._reply(ok_line("Bye"))
            return
        # RFC 1939 §6: the UPDATE state removes the marked messages. The
        # lock goes before the reply, so a client may log in again at once.
        result = await asyncio.to_thread(_commit_and_release, self.drop)
        self.counts["del"] = result.deleted
        if result.failed:
            raise Pop3Error("Some deleted messages not removed", RespCode.SYS_TEMP)
        await self._reply(ok_line("Logging out"))

    # -- TRANSACTION ------------------------------------------------------

    def _maildrop(self) -> Maildrop:
        assert self.drop is not None
        return self.drop

    async def _on_stat(self, event: events.Stat) -> None:
        sizes = await self._sizes()
        octets = sum(size for _, size in sizes)
        await self._reply(ok_line(f"{len(sizes)} {octets}"))

    async def _sizes(self) -> list[tuple[int, int]]:
        """(number, size) of the live messages; a trip to the disk only
        when some size is not known yet (a fresh maildrop)."""
        drop = self._maildrop()
        sizes = drop.known_sizes()
        if sizes is None:
            sizes = await asyncio.to_thread(_listing, drop)
        return sizes

    async def _on_list(self, event: events.List) -> None:
        drop = self._maildrop()
        if event.msg is not None:
            message = drop.get(event.msg)
            size = await asyncio.to_thread(drop.size_of, message)
            await self._reply(ok_line(f"{event.msg} {size}"))
            return
        sizes = await self._sizes()
        octets = sum(size for _, size in sizes)
        first = ok_line(f"{len(sizes)} messages ({octets} octets)")
        lines = [b"%d %d" % pair for pair in sizes]
        await self._reply(multiline(first, lines))

    async def _on_uidl(self, event: events.Uidl) -> None:
        drop = self._maildrop()
        if event.msg is not None:
            uidl = drop.get(event.msg).uidl
            await self._reply(ok_line(f"{event.msg} {uidl}"))
            return
        lines = [f"{n} {m.uidl}".encode("ascii") for n, m in drop.live()]
        await self._reply(multiline(ok_line(), lines))

    async def _on_retr(self, event: events.Retr) -> None:
        drop = self._maildrop()
        message = drop.get(event.msg)
        in_order = event.msg == self._last_retr + 1
        self._last_retr = event.msg
        rest: BinaryIO | None = None
        ahead = self._ahead.pop(event.msg, None)
        if ahead is not None:
            size, first = ahead
        else:
            # One trip to a worker thread for a message of up to one
            # chunk, and the next ones when reading in order.
            following = self._following(event.msg) if in_order else []
            budget = self._ahead_budget
            size, first, rest, found = await asyncio.to_thread(
                _start_retr, drop, message, following, budget
            )
            self._ahead = {msg: (n, data) for msg, n, data in found}
            if in_order and found:
                self._ahead_budget = min(2 * budget, AHEAD_MAX_BYTES)
            elif not in_order:
                self._ahead_budget = AHEAD_FIRST_BYTES
        status = ok_line(f"{size} octets")
        await self._stream(status, first, rest, None)
        drop.mark_retrieved(message)
        self.counts["retr"] += 1
        self.counts["retr_bytes"] += size

    def _following(self, msg: int) -> list[tuple[int, DropMessage]]:
        """The messages to read ahead after number `msg`."""
        drop = self._maildrop()
        if not self.service.lock_session:
            return []
        end = min(len(drop.messages), msg + AHEAD_MAX_MESSAGES)
        return [
            (n, drop.messages[n - 1])
            for n in range(msg + 1, end + 1)
            if not drop.messages[n - 1].is_deleted
        ]

    async def _on_top(self, event: events.Top) -> None:
        drop = self._maildrop()
        message = drop.get(event.msg)
        ahead = self._ahead.get(event.msg)
        if ahead is not None:
            first, rest = ahead[1], None
        else:
            first, rest = await asyncio.to_thread(drop.start_read, message)
        status = ok_line("Top of message follows")
        await self._stream(status, first, rest, TopFilter(event.lines))
        self.counts["top"] += 1

    async def _stream(
        self,
        status: bytes,
        first: bytes,
        rest: BinaryIO | None,
        cut: TopFilter | None,
    ) -> None:
        """Send `status` and a byte-stuffed multi-line body (RFC 1939 §3).

        `first` is the start of the message; `rest`, when not None, the
        open file with the remainder, closed here. A message of one
        chunk goes out in one write.
        """
        stuffer = DotStuffer()
        pending = [status]
        try:
            chunk = first
            while chunk:
                if cut is not None:
                    chunk = cut.feed(chunk)
                pending.append(stuffer.feed(chunk))
                if rest is None or (cut is not None and cut.is_done):
                    break
                await self._reply(b"".join(pending))
                pending.clear()
                chunk = await self._read_more(rest)
        finally:
            if rest is not None:
                await asyncio.to_thread(rest.close)
        pending.append(stuffer.finish())
        await self._reply(b"".join(pending))

    async def _read_more(self, file: BinaryIO) -> bytes:
        try:
            return await asyncio.to_thread(file.read, READ_CHUNK_BYTES)
        except OSError:
            # The +OK is out: only closing the connection is honest.
            log.exception("%s: read error in RETR/TOP", self.conn.conn_id)
            raise _StreamError from None

    async def _on_dele(self, event: events.Dele) -> None:
        self._maildrop().delete(event.msg)
        self._ahead.pop(event.msg, None)
        await self._reply(ok_line(f"Message {event.msg} deleted"))

    async def _on_noop(self, event: events.Noop) -> None:
        await self._reply(ok_line())

    async def _on_rset(self, event: events.Rset) -> None:
        drop = self._maildrop()
        drop.reset()
        await self._reply(ok_line(f"{len(drop.messages)} messages"))

    # -- helpers -------------------------------------------------------------

    def _ip_key(self) -> str:
        return "ip:" + self.conn.peer_ip

    def _log_disconnect(self, reason: str) -> None:
        counts = self.counts
        deleted = counts["del"]
        marked = sum(1 for m in self.drop.messages if m.is_deleted) if self.drop else 0
        log.info(
            "%s: disconnect: user=<%s>, reason=%s, top=%d, retr=%d/%d, del=%d/%d",
            self.conn.conn_id,
            self.user or "",
            reason,
            counts["top"],
            counts["retr"],
            counts["retr_bytes"],
            deleted,
            marked,
        )


def _start_retr(
    drop: Maildrop,
    message: DropMessage,
    following: list[tuple[int, DropMessage]],
    budget: int,
) -> tuple[int, bytes, BinaryIO | None, list[tuple[int, int, bytes]]]:
    first, rest = drop.start_read(message)
    if rest is not None:
        return drop.size_of(message), first, rest, []
    # The whole message is read: its size needs no second read.
    size = drop.learn_size(message, first)
    return size, first, None, drop.read_ahead(following, budget)


def _commit_and_release(drop: Maildrop) -> CommitResult:
    try:
        return drop.commit()
    finally:
        drop.release()


def _listing(drop: Maildrop) -> list[tuple[int, int]]:
    return [(n, drop.size_of(m)) for n, m in drop.live()]


def _tls_available(conn: Connection) -> bool:
    return not conn.is_tls and bool(getattr(conn, "tls_available", True))


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _printable(text: str) -> str:
    # A failed user name is the client's text: keep a log line one line.
    return text.encode("unicode_escape").decode("ascii")[:100]


__all__ = ["Pop3Service", "plaintext_auth_allowed"]
