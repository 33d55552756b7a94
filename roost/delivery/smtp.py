"""Outbound SMTP and LMTP delivery: the smtp transport.

`SmtpTransport(settings).deliver(envelope, data, recipients, nexthop)`
makes one delivery attempt of one message to one next hop and returns
a `RecipientResult` per recipient: sent (2xx), deferred (4xx or no
host reachable) or bounced (5xx, or the message cannot be sent to any
host of that next hop: null MX, SIZE, SMTPUTF8).

How an attempt goes:

1. take an idle session to the same next hop when one is cached
   (connection reuse), else look the next hop up (MX, or the host of
   a `[host]` next hop) and connect to each address in turn;
2. per session: greeting, EHLO (HELO fallback), STARTTLS per
   smtp_tls_security_level, then `plan_message` fits the message to
   what the peer offered (SIZE, 8BITMIME, SMTPUTF8, DSN);
3. one transaction (pipelined when offered); recipients the host
   could not decide (connection lost or 421 before the message was
   sent) go on to the next address, the rest are final.

At most default_destination_concurrency_limit attempts run at once
per next hop. The protocol itself is roost.protocols.smtp.client; this
module only moves its bytes and keeps the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from roost.delivery.dns import DnsError, Host, MxResolver
from roost.delivery.idn import ascii_trace, utf8_addr_xtext, wire_address
from roost.delivery.mime7bit import has_8bit, header_has_8bit, to_7bit
from roost.delivery.transport import (
    LMTP_PORT,
    SMTP_PORT,
    NextHop,
    Router,
    RouterSettings,
)
from roost.protocols.smtp.client import (
    Capabilities,
    Closed,
    Event,
    Greeted,
    MessageCommand,
    Outcome,
    Phase,
    RecipientCommand,
    Refused,
    SmtpClient,
    TlsReady,
    TransactionDone,
)
from roost.queue.envelope import Envelope, Recipient
from roost.queue.result import RecipientResult, format_delay

log = logging.getLogger("roost.smtp")

# Enhanced status codes (RFC 3463, RFC 6531) decided on our side.
DSN_CONNECT_FAILED = "4.4.1"
DSN_LOST = "4.4.2"
DSN_TLS_FAILED = "4.7.5"
DSN_TLS_NOT_OFFERED = "4.7.4"
DSN_TOO_BIG = "5.3.4"
DSN_NO_8BITMIME = "5.6.3"
DSN_NO_SMTPUTF8 = "5.6.7"

# postfix's smtp_*_timeout defaults are 300 s for most replies
REPLY_TIMEOUT_S = 300.0
# postfix: smtp_connection_cache_time_limit (idle) and
# smtp_connection_reuse_time_limit (total age of a reused session)
IDLE_LIMIT_S = 2.0
REUSE_LIMIT_S = 300.0
READ_BYTES = 65536


class TransportSettings(Protocol):
    @property
    def smtp_helo_name(self) -> str: ...
    @property
    def smtp_bind_address(self) -> str: ...
    @property
    def smtp_connect_timeout(self) -> int: ...
    @property
    def smtp_tls_security_level(self) -> str: ...
    @property
    def default_destination_concurrency_limit(self) -> int: ...
    @property
    def dns_resolver(self) -> list[str]: ...


class RouterSettingsAndTransport(TransportSettings, RouterSettings, Protocol):
    pass


# Sans-IO: fitting one message to one peer.


@dataclass(frozen=True, slots=True)
class Refusal:
    """A recipient we will not send to this peer, and why."""

    recipient: Recipient
    dsn: str
    text: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The transaction to run (None when nobody is left) and the
    recipients refused before it; `sent` matches command.recipients."""

    command: MessageCommand | None
    sent: tuple[Recipient, ...]
    refused: tuple[Refusal, ...]


def plan_message(
    caps: Capabilities,
    envelope: Envelope,
    data: bytes,
    recipients: Sequence[Recipient],
    server: str,
) -> Plan:
    """Fits the message to what the peer offered.

    SIZE over the peer's limit bounces (RFC 1870 6.1: 5.3.4). UTF-8
    in an address or, for SMTPUTF8 mail, in a header needs SMTPUTF8
    at the peer, else it bounces 5.6.7 (RFC 6531 3.2), and SMTPUTF8 is
    sent only then (case 030). 8-bit data to a peer without 8BITMIME
    is converted to quoted-printable, or bounces 5.6.3 when it cannot
    be (RFC 6152 3). DSN parameters go only to a peer that offers DSN.
    `server` is `host[ip]` for the texts.
    """
    if not caps.smtputf8:
        data = ascii_trace(data)
    refuse_all = _refuse_message(caps, envelope, data, server)
    if refuse_all is not None:
        dsn, text = refuse_all
        return Plan(None, (), tuple(Refusal(r, dsn, text) for r in recipients))

    sent: list[Recipient] = []
    commands: list[RecipientCommand] = []
    refused: list[Refusal] = []
    for recipient in recipients:
        wire = wire_address(recipient.address)
        if not wire.isascii() and not caps.smtputf8:
            text = f"SMTPUTF8 is required, but was not offered by host {server}"
            refused.append(Refusal(recipient, DSN_NO_SMTPUTF8, text))
            continue
        sent.append(recipient)
        commands.append(RecipientCommand(wire, _rcpt_params(caps, recipient)))
    if not sent:
        return Plan(None, (), tuple(refused))

    body, params = _body_and_params(caps, envelope, data, commands)
    mail_from = wire_address(envelope.mail_from)
    command = MessageCommand(mail_from, tuple(commands), body, params)
    return Plan(command, tuple(sent), tuple(refused))


def _refuse_message(
    caps: Capabilities, envelope: Envelope, data: bytes, server: str
) -> tuple[str, str] | None:
    if caps.size_limit is not None and len(data) > caps.size_limit:
        text = (
            f"message size {len(data)} exceeds size limit "
            f"{caps.size_limit} of server {server}"
        )
        return DSN_TOO_BIG, text
    if _message_needs_utf8(envelope, data) and not caps.smtputf8:
        return DSN_NO_SMTPUTF8, (
            f"SMTPUTF8 is required, but was not offered by host {server}"
        )
    if has_8bit(data) and not caps.eightbitmime and to_7bit(data) is None:
        text = (
            "message has 8-bit content that cannot be converted to 7-bit, "
            f"and host {server} does not support 8BITMIME"
        )
        return DSN_NO_8BITMIME, text
    return None


def _message_needs_utf8(envelope: Envelope, data: bytes) -> bool:
    if not wire_address(envelope.mail_from).isascii():
        return True
    # RFC 6532 headers are only UTF-8 in mail that came with SMTPUTF8;
    # 8-bit headers in other mail are legacy junk, sent as they are.
    return envelope.smtputf8 and header_has_8bit(data)


def _body_and_params(
    caps: Capabilities,
    envelope: Envelope,
    data: bytes,
    commands: list[RecipientCommand],
) -> tuple[bytes, tuple[str, ...]]:
    params: list[str] = []
    if has_8bit(data):
        if caps.eightbitmime:
            params.append("BODY=8BITMIME")
        else:
            data = to_7bit(data) or data
    needs_utf8 = _message_needs_utf8(envelope, data) or any(
        not c.address.isascii() for c in commands
    )
    if needs_utf8:
        params.append("SMTPUTF8")
    if "SIZE" in caps.keywords:
        params.append(f"SIZE={len(data)}")
    if caps.dsn and envelope.dsn_ret:
        params.append(f"RET={envelope.dsn_ret.upper()}")
    if caps.dsn and envelope.dsn_envid:
        params.append(f"ENVID={xtext(envelope.dsn_envid)}")
    return data, tuple(params)


def _rcpt_params(caps: Capabilities, recipient: Recipient) -> tuple[str, ...]:
    if not caps.dsn:
        return ()
    params: list[str] = []
    if recipient.notify:
        params.append("NOTIFY=" + ",".join(recipient.notify))
    if recipient.orcpt:
        orcpt = _orcpt(caps, recipient.orcpt)
        if orcpt:
            params.append(f"ORCPT={orcpt}")
    return tuple(params)


def _orcpt(caps: Capabilities, orcpt: str) -> str | None:
    # An IDN domain goes as A-labels; a UTF-8 local part needs RFC 6533
    # 3's "utf-8" type, for a peer with SMTPUTF8 only (the others never
    # see such a recipient: it needs SMTPUTF8 itself).
    kind, _, address = orcpt.partition(";")
    if not address:
        return None
    if kind.lower() == "rfc822":
        address = wire_address(address)
    if address.isascii():
        return f"{kind};{xtext(address)}"
    if caps.smtputf8:
        return f"utf-8;{utf8_addr_xtext(address)}"
    return None


def xtext(text: str) -> str:
    """RFC 3461 4: "+", "=", controls and non-ASCII as +XX."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


# I/O: sessions.


@dataclass
class _Session:
    """One connection to one remote address and its client core."""

    client: SmtpClient
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str
    address: str
    port: int
    reply_timeout_s: float
    created: float = field(default_factory=time.monotonic)
    idle_since: float = 0.0

    @property
    def server(self) -> str:
        return f"{self.host}[{self.address}]"

    @property
    def relay(self) -> str:
        return f"{self.server}:{self.port}"

    async def next_event(self) -> Event:
        """Pumps bytes until the core has an event."""
        while True:
            outgoing = self.client.data_to_send()
            if outgoing:
                await self._write(outgoing)
            event = self.client.next_event()
            if event is not None:
                return event
            if self.client.phase in (Phase.CLOSED, Phase.FAILED):
                return Closed("session already closed")
            try:
                data = await asyncio.wait_for(
                    self.reader.read(READ_BYTES), self.reply_timeout_s
                )
            except TimeoutError:
                self.client.abort("conversation timed out")
                continue
            except OSError as error:
                self.client.abort(f"read error: {error.strerror or error}")
                continue
            self.client.receive_data(data)

    async def _write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.reply_timeout_s)
        except (OSError, TimeoutError) as error:
            self.client.abort(f"write error: {error}")

    async def close(self) -> None:
        """QUIT when the session is healthy, then close the socket."""
        if self.client.is_reusable:
            self.client.quit()
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._until_closed(), 10)
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    async def _until_closed(self) -> None:
        while not isinstance(await self.next_event(), Closed):
            pass


@dataclass
class _Destination:
    """Concurrency slots and idle sessions of one next hop."""

    slots: asyncio.Semaphore
    idle: list[_Session] = field(default_factory=list)


@dataclass
class _HostFailure:
    """Why a host gave no session: for the log and deferral text."""

    dsn: str
    text: str
    relay: str = "none"
    diagnostic: str = ""
    remote_mta: str = ""


@dataclass
class _Attempt:
    """One deliver() call: the recipients still open and the results."""

    envelope: Envelope
    data: bytes
    pending: list[Recipient]
    started: float
    results: dict[int, RecipientResult] = field(default_factory=dict)
    order: dict[int, int] = field(default_factory=dict)
    failure: _HostFailure | None = None
    setup_s: float = 0.0

    @property
    def is_done(self) -> bool:
        return not self.pending


class SmtpTransport:
    """Outbound SMTP/LMTP client with a session cache per next hop.

    `resolver` and `clock` are for tests (a resolver pointed at a test
    DNS server; a wall clock for delays). Call `close()` at shutdown.
    """

    def __init__(
        self,
        settings: TransportSettings,
        *,
        resolver: MxResolver | None = None,
        clock: Callable[[], float] = time.time,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
        idle_limit_s: float = IDLE_LIMIT_S,
    ) -> None:
        self.settings = settings
        self.resolver = resolver or MxResolver(settings)
        self.clock = clock
        self.reply_timeout_s = reply_timeout_s
        self.idle_limit_s = idle_limit_s
        self._destinations: dict[str, _Destination] = {}
        self._unverified = _unverified_context()
        self._verified: ssl.SSLContext | None = None
        self.sessions_opened = 0

    async def deliver(
        self,
        envelope: Envelope,
        data: bytes,
        recipients: list[Recipient],
        nexthop: NextHop,
    ) -> list[RecipientResult]:
        """One attempt for `recipients` (all routed to `nexthop`);
        one result per recipient, in their order. Never raises for
        remote or DNS trouble: that becomes deferred/bounced results."""
        attempt = _Attempt(envelope, data, list(recipients), self.clock())
        attempt.order = {id(r): i for i, r in enumerate(recipients)}
        if nexthop.transport in ("error", "retry"):
            self._fail_all(attempt, nexthop, recipients)
        else:
            destination = self._destination(nexthop)
            async with destination.slots:
                await self._deliver(attempt, nexthop, destination)
        return [attempt.results[i] for i in range(len(recipients))]

    async def close(self) -> None:
        """QUITs every cached session."""
        sessions = [s for d in self._destinations.values() for s in d.idle]
        for destination in self._destinations.values():
            destination.idle.clear()
        await asyncio.gather(*(s.close() for s in sessions))

    def _destination(self, nexthop: NextHop) -> _Destination:
        key = str(nexthop)
        destination = self._destinations.get(key)
        if destination is None:
            limit = max(1, self.settings.default_destination_concurrency_limit)
            destination = _Destination(asyncio.Semaphore(limit))
            self._destinations[key] = destination
        return destination

    async def _deliver(
        self, attempt: _Attempt, nexthop: NextHop, destination: _Destination
    ) -> None:
        session = self._take_idle(destination)
        if session is not None:
            await self._use(session, attempt, destination)
            if attempt.is_done:
                return

        setup_start = self.clock()
        try:
            hosts = await self._hosts(nexthop)
        except DnsError as error:
            attempt.failure = _HostFailure(error.dsn, error.text)
            hosts = []
        for host, address in _candidates(hosts):
            session = await self._open(nexthop, host, address, attempt)
            if session is None:
                continue
            attempt.setup_s = self.clock() - setup_start
            await self._use(session, attempt, destination)
            if attempt.is_done:
                return
            setup_start = self.clock()
        self._fail_pending(attempt)

    async def _hosts(self, nexthop: NextHop) -> list[Host]:
        if nexthop.unix_path:
            return [Host("localhost", 0, (nexthop.unix_path,))]
        if nexthop.mx_lookup:
            return await self.resolver.resolve_next_hops(nexthop.host)
        return [await self.resolver.resolve_host(nexthop.host)]

    # Opening a session: connect, greet, STARTTLS.

    async def _open(
        self, nexthop: NextHop, host: Host, address: str, attempt: _Attempt
    ) -> _Session | None:
        is_lmtp = nexthop.transport == "lmtp"
        port = nexthop.port or (LMTP_PORT if is_lmtp else SMTP_PORT)
        where = f"{host.name}[{address}]:{port}"
        try:
            reader, writer = await self._connect(nexthop, address, port)
        except (OSError, TimeoutError) as error:
            reason = getattr(error, "strerror", None) or str(error) or "timed out"
            text = f"connect to {where}: {reason}"
            attempt.failure = _HostFailure(DSN_CONNECT_FAILED, text)
            log.info("%s: %s", attempt.envelope.queue_id, text)
            return None

        self.sessions_opened += 1
        client = SmtpClient(self.settings.smtp_helo_name, lmtp=is_lmtp)
        session = _Session(
            client, reader, writer, host.name, address, port, self.reply_timeout_s
        )
        failure = await self._greet(session, is_lmtp or bool(nexthop.unix_path))
        if failure is None:
            return session
        attempt.failure = failure
        log.info("%s: %s", attempt.envelope.queue_id, failure.text)
        await session.close()
        return None

    async def _connect(
        self, nexthop: NextHop, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        timeout = self.settings.smtp_connect_timeout or None
        if nexthop.unix_path:
            opening = asyncio.open_unix_connection(nexthop.unix_path)
            return await asyncio.wait_for(opening, timeout)
        bind = self.settings.smtp_bind_address
        same_family = bind and (":" in bind) == (":" in address)
        local_addr = (bind, 0) if same_family else None
        opening = asyncio.open_connection(address, port, local_addr=local_addr)
        return await asyncio.wait_for(opening, timeout)

    async def _greet(self, session: _Session, skip_tls: bool) -> _HostFailure | None:
        event = await session.next_event()
        failure = _session_failure(session, event)
        if failure is not None or skip_tls:
            return failure
        level = self.settings.smtp_tls_security_level
        if level == "none":
            return None
        if level == "dane-only":
            text = f"TLS policy dane-only is not supported, for {session.server}"
            return _HostFailure(DSN_TLS_FAILED, text, session.relay)
        if not session.client.capabilities.starttls:
            if level in ("may", "dane"):
                return None
            text = f"TLS is required, but was not offered by host {session.server}"
            return _HostFailure(DSN_TLS_NOT_OFFERED, text, session.relay)
        return await self._start_tls(session, level)

    async def _start_tls(self, session: _Session, level: str) -> _HostFailure | None:
        session.client.start_tls()
        event = await session.next_event()
        if not isinstance(event, TlsReady):
            return _session_failure(session, event)
        if _buffered_bytes(session.reader):
            # plaintext that followed the 220 would be read as if it
            # came over TLS (CVE-2011-0411, client side; RFC 3207 4.2)
            text = f"protocol error: data after STARTTLS reply from {session.server}"
            return _HostFailure(DSN_TLS_FAILED, text, session.relay)
        verify = level in ("verify", "secure")
        context = await self._verified_context() if verify else self._unverified
        try:
            await asyncio.wait_for(
                session.writer.start_tls(context, server_hostname=session.host),
                self.reply_timeout_s,
            )
        except (ssl.SSLError, OSError, TimeoutError) as error:
            text = f"Cannot start TLS: handshake failure with {session.server}: {error}"
            return _HostFailure(DSN_TLS_FAILED, text, session.relay)
        session.client.tls_started()
        return _session_failure(session, await session.next_event())

    async def _verified_context(self) -> ssl.SSLContext:
        if self._verified is None:
            # loads the system CA store from disk: not on the loop
            self._verified = await asyncio.to_thread(ssl.create_default_context)
        return self._verified

    # Using a session for the attempt's recipients.

    async def _use(
        self, session: _Session, attempt: _Attempt, destination: _Destination
    ) -> None:
        caps = session.client.capabilities
        plan = plan_message(
            caps, attempt.envelope, attempt.data, attempt.pending, session.server
        )
        for refusal in plan.refused:
            self._decide_local(attempt, refusal, session)
        if plan.command is not None:
            session.client.send_message(plan.command)
            transmit_start = self.clock()
            event = await session.next_event()
            transmit_s = self.clock() - transmit_start
            if isinstance(event, TransactionDone):
                self._decide_remote(attempt, plan, event, session, transmit_s)
            else:
                attempt.failure = _session_failure(session, event)
        await self._release(session, destination)

    def _decide_remote(
        self,
        attempt: _Attempt,
        plan: Plan,
        done: TransactionDone,
        session: _Session,
        transmit_s: float,
    ) -> None:
        for recipient, outcome in zip(plan.sent, done.outcomes, strict=True):
            if _may_try_elsewhere(outcome, done):
                text = f"{outcome.text} with {session.server}"
                attempt.failure = _HostFailure(outcome.dsn, text, session.relay)
                continue
            result = _remote_result(recipient, outcome, session)
            self._record(attempt, recipient, result, transmit_s)

    def _decide_local(
        self, attempt: _Attempt, refusal: Refusal, session: _Session
    ) -> None:
        status = "bounced" if refusal.dsn.startswith("5") else "deferred"
        result = RecipientResult(
            refusal.recipient.address, status, refusal.dsn, refusal.text, session.relay
        )
        self._record(attempt, refusal.recipient, result, 0.0)

    def _fail_pending(self, attempt: _Attempt) -> None:
        failure = attempt.failure or _HostFailure(DSN_LOST, "no host to try")
        status = "bounced" if failure.dsn.startswith("5") else "deferred"
        for recipient in list(attempt.pending):
            result = RecipientResult(
                recipient.address,
                status,
                failure.dsn,
                failure.text,
                failure.relay,
                failure.diagnostic,
                failure.remote_mta,
            )
            self._record(attempt, recipient, result, 0.0)

    def _fail_all(
        self, attempt: _Attempt, nexthop: NextHop, recipients: Sequence[Recipient]
    ) -> None:
        # postfix's error: transport bounces (5.0.0), retry: defers (4.0.0)
        is_error = nexthop.transport == "error"
        status, dsn = ("bounced", "5.0.0") if is_error else ("deferred", "4.0.0")
        for recipient in recipients:
            result = RecipientResult(
                recipient.address, status, dsn, nexthop.text, "none"
            )
            self._record(attempt, recipient, result, 0.0)

    def _record(
        self,
        attempt: _Attempt,
        recipient: Recipient,
        result: RecipientResult,
        transmit_s: float,
    ) -> None:
        attempt.results[attempt.order[id(recipient)]] = result
        attempt.pending = [r for r in attempt.pending if r is not recipient]
        now = self.clock()
        arrival = attempt.envelope.arrival_time or attempt.started
        in_queue = max(0.0, attempt.started - arrival)
        delays = "/".join(
            format_delay(x) for x in (in_queue, 0.0, attempt.setup_s, transmit_s)
        )
        log.info(
            "%s: to=<%s>, relay=%s, delay=%s, delays=%s, dsn=%s, status=%s (%s)",
            attempt.envelope.queue_id,
            result.address,
            result.relay or "none",
            format_delay(now - arrival),
            delays,
            result.dsn,
            result.status,
            result.reason,
        )

    # The session cache.

    def _take_idle(self, destination: _Destination) -> _Session | None:
        now = time.monotonic()
        while destination.idle:
            session = destination.idle.pop()
            fresh = now - session.idle_since < self.idle_limit_s
            young = now - session.created < REUSE_LIMIT_S
            if fresh and young and session.client.is_reusable:
                return session
            _close_soon(session)
        return None

    async def _release(self, session: _Session, destination: _Destination) -> None:
        young = time.monotonic() - session.created < REUSE_LIMIT_S
        if not (session.client.is_reusable and young):
            await session.close()
            return
        session.idle_since = time.monotonic()
        destination.idle.append(session)
        asyncio.get_running_loop().call_later(
            self.idle_limit_s, self._expire, destination, session
        )

    def _expire(self, destination: _Destination, session: _Session) -> None:
        if session in destination.idle:
            idle_s = time.monotonic() - session.idle_since
            if idle_s >= self.idle_limit_s * 0.99:
                destination.idle.remove(session)
                _close_soon(session)


_closing: set[asyncio.Task[None]] = set()


def _close_soon(session: _Session) -> None:
    task = asyncio.get_running_loop().create_task(session.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _candidates(hosts: Sequence[Host]) -> Iterator[tuple[Host, str]]:
    for host in hosts:
        for address in host.addresses:
            yield host, address


def _session_failure(session: _Session, event: Event) -> _HostFailure | None:
    """None for a Greeted event, else why the session is no good."""
    if isinstance(event, Greeted):
        return None
    if isinstance(event, Refused):
        reply = event.reply
        text = f"host {session.server} refused to talk to me: {reply.text()}"
        if event.stage not in ("greeting",):
            text = (
                f"host {session.server} said: {reply.text()} "
                f"(in reply to {event.stage} command)"
            )
        # the greeting or hello was refused: always try other hosts
        # and defer (postfix: smtp_skip_5xx_greeting)
        dsn = "4" + reply.dsn[1:]
        return _HostFailure(
            dsn, text, session.relay, f"smtp; {reply.text()}", session.host
        )
    if isinstance(event, Closed):
        text = f"{event.error or 'lost connection'} with {session.server}"
        if event.stage:
            text += f" while {event.stage}"
        return _HostFailure(DSN_LOST, text, session.relay)
    return _HostFailure(DSN_LOST, f"unexpected event from {session.server}")


def _may_try_elsewhere(outcome: Outcome, done: TransactionDone) -> bool:
    """An undecided recipient may go to the next host: the session
    broke, or said 421, before the message itself was sent."""
    if done.data_sent or outcome.status_class != 4:
        return False
    return outcome.reply is None or outcome.reply.code == 421


def _remote_result(
    recipient: Recipient, outcome: Outcome, session: _Session
) -> RecipientResult:
    if outcome.reply is None:
        text = f"{outcome.text} with {session.server}"
        status = "deferred"
        return RecipientResult(
            recipient.address, status, outcome.dsn, text, session.relay
        )
    reply_text = outcome.reply.text()
    if outcome.status_class == 2:
        status, reason = "sent", reply_text
    else:
        status = "bounced" if outcome.status_class == 5 else "deferred"
        reason = (
            f"host {session.server} said: {reply_text} "
            f"(in reply to {outcome.command} command)"
        )
    return RecipientResult(
        recipient.address,
        status,
        outcome.dsn,
        reason,
        session.relay,
        f"smtp; {reply_text}",
        session.host,
    )


def _buffered_bytes(reader: asyncio.StreamReader) -> int:
    # StreamReader has no public way to ask what it holds; _buffer has
    # been its bytearray since Python 3.4 (a missing one reads as 0).
    return len(getattr(reader, "_buffer", b""))


def _unverified_context() -> ssl.SSLContext:
    """Opportunistic TLS (levels may and encrypt): encryption without
    certificate checks, as postfix does at those levels (RFC 7435)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RemoteDelivery:
    """The queue manager's remote transport.

    `await remote(envelope, data, recipients)` routes each recipient
    (transport_maps, relayhost, MX), splits them by next hop, runs one
    SmtpTransport attempt per next hop concurrently and returns one
    result per recipient in their order. The transport tables are
    re-read when their files change (checked at most once a second,
    in a thread)."""

    def __init__(
        self,
        settings: RouterSettingsAndTransport,
        *,
        transport: SmtpTransport | None = None,
        router: Router | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport or SmtpTransport(settings)
        self._router = router
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def __call__(
        self, envelope: Envelope, data: bytes, recipients: list[Recipient]
    ) -> list[RecipientResult]:
        router = await self._current_router()
        groups: dict[NextHop, list[int]] = {}
        results: dict[int, RecipientResult] = {}
        for index, recipient in enumerate(recipients):
            try:
                nexthop = router.route(recipient.address)
            except ValueError as error:
                text = f"mail transport unavailable: {error}"
                results[index] = RecipientResult.deferred(
                    recipient.address, text, "4.3.0", "none"
                )
                continue
            groups.setdefault(nexthop, []).append(index)

        async def one_hop(nexthop: NextHop, indexes: list[int]) -> None:
            batch = [recipients[i] for i in indexes]
            if nexthop.transport == "local":
                text = "local transport is not reachable from the smtp client"
                got = [
                    RecipientResult.deferred(r.address, text, "4.3.0") for r in batch
                ]
            else:
                got = await self.transport.deliver(envelope, data, batch, nexthop)
            results.update(zip(indexes, got, strict=True))

        await asyncio.gather(*(one_hop(h, ix) for h, ix in groups.items()))
        return [results[i] for i in range(len(recipients))]

    async def close(self) -> None:
        await self.transport.close()

    async def _current_router(self) -> Router:
        async with self._lock:
            now = time.monotonic()
            router = self._router
            due = router is None or now - self._checked >= 1.0
            if due and (router is None or await asyncio.to_thread(router.is_stale)):
                router = await asyncio.to_thread(Router.load, self.settings)
                self._router = router
            if due:
                self._checked = now
            assert router is not None
            return router
