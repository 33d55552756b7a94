"""smtpd: the SMTP server core glued to the queue, auth and policy.

One `_Session` per connection pumps bytes between `roost.net` and the
sans-IO core (`roost.protocols.smtp.server`) and answers each event:
recipients through LocalRecipients and policy.py, AUTH through
roost.auth.sasl, the message into the spool. The 250 to the end of
data is sent only after `spool.enqueue` says the queue file is
durable (ARCHITECTURE: never acknowledge before it is durable).

Replies are written in batches: whatever the core answered is sent
when it needs more input, so a pipelining client gets its replies in
one write (RFC 2920 3.2) and in command order.

Log lines follow postfix's smtpd, so pflogsumm and grep habits work:
`connect from host[ip]`, `QUEUEID: client=host[ip]`,
`NOQUEUE: reject: RCPT from host[ip]: 550 5.1.1 <a>: ...; from=<..>
to=<..> proto=ESMTP helo=<..>`, `disconnect from host[ip] ...`.
As in postfix, a transaction gets its queue id, and the `client=`
line that pflogsumm counts as "received", when its first recipient
is accepted (postfix opens the queue file then); refusals before that
are logged as NOQUEUE.

`host` is the client's forward-confirmed PTR name (`unknown` when
there is none, `localhost` on loopback without a lookup), looked up
before the greeting as postfix does (smtpd_peername_lookup).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from roost.auth import sasl
from roost.auth.throttle import AuthThrottle
from roost.config import Settings
from roost.delivery.local import UnknownRecipient
from roost.net import Connection, IdleTimeout
from roost.protocols.smtp import events as ev
from roost.protocols.smtp import reply as r
from roost.protocols.smtp.server import ServerConnection, State
from roost.queue import Envelope, Recipient
from roost.services import policy
from roost.services.dnscheck import DnsChecks

log = logging.getLogger("roost.smtpd")

# Used when message_size_limit = 0 ("no limit"): memory still needs one.
UNLIMITED_MESSAGE_BYTES = 1 << 31

# replies decided here (RFC 4954 6, RFC 3207 4, RFC 5321 4.2.3)
AUTH_REQUIRED = r.Reply.of(530, "5.7.0", "Authentication required")
ENCRYPTION_REQUIRED = r.Reply.of(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
AUTH_NOT_ENABLED = r.Reply.of(503, "5.5.1", "Error: authentication not enabled")
AUTH_MECHANISM = r.Reply.of(504, "5.5.4", "Unsupported authentication mechanism")
AUTH_BAD_BASE64 = r.Reply.of(501, "5.5.2", "Cannot decode response")
AUTH_FAILED = r.Reply.of(535, "5.7.8", "Error: authentication failed")
AUTH_OK = r.Reply.of(235, "2.7.0", "Authentication successful")
TLS_UNAVAILABLE = r.Reply.of(454, "4.7.0", "TLS not available due to local problem")
QUEUE_WRITE_ERROR = r.Reply.of(451, "4.3.0", "Error: queue file write error")
INTERNAL_ERROR = r.Reply.of(451, "4.3.0", "Error: internal error")

# RCPT verdicts are remembered this long, so a repeated recipient check
# (the same client, sender and recipient) needs no worker thread: the
# users, alias and access files it reads are themselves re-checked for
# changes about once a second (roost/delivery/aliases.py), so a change
# takes effect as soon as it did before, give or take this.
_VERDICT_TTL_S = 1.0
_VERDICT_CACHE_MAX = 4096
_VerdictKey = tuple[str, policy.DomainStatus | None, str, str, str, str, str]


class SpoolLike(Protocol):
    def new_queue_id(self) -> str: ...

    async def enqueue(self, envelope: Envelope, data: bytes) -> str: ...


class RecipientResolver(Protocol):
    def resolve(self, address: str) -> list[str] | None: ...

    def is_our_domain(self, domain: str) -> bool: ...


class SmtpService:
    """The SMTP listener's handler: `SmtpService(...).handle`.

    submission=True (ports 587/465) requires AUTH before MAIL;
    implicit_tls=True says the listener already speaks TLS (465).
    """

    def __init__(
        self,
        settings: Settings,
        spool: SpoolLike,
        userdb: sasl.Verifier | None,
        local_recipients: RecipientResolver,
        *,
        submission: bool = False,
        implicit_tls: bool = False,
        clock: Callable[[], float] = time.time,
        throttle: AuthThrottle | None = None,
        dns: DnsChecks | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.userdb = userdb
        self.local_recipients = local_recipients
        self.submission = submission
        self.implicit_tls = implicit_tls
        self.clock = clock
        self.throttle = throttle or AuthThrottle()
        self.dns = dns or DnsChecks(settings)
        self.access_tables = policy.AccessTables()
        self.domains = policy.Domains.of(
            settings.mynetworks,
            settings.mydestination,
            settings.relay_domains,
            settings.virtual_mailbox_domains,
            is_ours=local_recipients.is_our_domain,
            recipient_delimiter=settings.recipient_delimiter,
            sender_login_maps=settings.smtpd_sender_login_maps,
        )
        rcpt_lists = (
            *settings.smtpd_client_restrictions,
            *settings.smtpd_helo_restrictions,
            *settings.smtpd_relay_restrictions,
            *settings.smtpd_recipient_restrictions,
        )
        every_list = (*settings.smtpd_sender_restrictions, *rcpt_lists)
        self.checks_sender_domain = policy.names_any(
            every_list, "reject_unknown_sender_domain"
        )
        self.checks_recipient_domain = policy.names_any(
            rcpt_lists, "reject_unknown_recipient_domain"
        )
        self._per_client: Counter[str] = Counter()
        self._verdicts: dict[_VerdictKey, tuple[float, policy.Verdict]] = {}
        if not policy.has_relay_guard(
            settings.smtpd_relay_restrictions, settings.smtpd_recipient_restrictions
        ):
            log.warning(
                "warning: no reject_unauth_destination in smtpd_relay_restrictions"
                " or smtpd_recipient_restrictions; refusing relay for strangers"
            )

    def cached_verdict(self, key: _VerdictKey) -> policy.Verdict | None:
        """A recipient verdict decided less than _VERDICT_TTL_S ago."""
        entry = self._verdicts.get(key)
        if entry is None:
            return None
        decided, verdict = entry
        if not 0 <= self.clock() - decided < _VERDICT_TTL_S:
            del self._verdicts[key]
            return None
        return verdict

    def remember_verdict(self, key: _VerdictKey, verdict: policy.Verdict) -> None:
        if len(self._verdicts) >= _VERDICT_CACHE_MAX:
            self._verdicts.clear()
        self._verdicts[key] = (self.clock(), verdict)

    async def handle(self, conn: Connection) -> None:
        """Run one SMTP session on conn until QUIT, error or EOF."""
        ip = conn.peer_ip
        self._per_client[ip] += 1
        try:
            if self._too_many(ip):
                await self._refuse_connection(conn)
                return
            await _Session(self, conn).run()
        finally:
            self._per_client[ip] -= 1
            if self._per_client[ip] <= 0:
                del self._per_client[ip]

    def _too_many(self, ip: str) -> bool:
        # postfix exempts smtpd_client_event_limit_exceptions = $mynetworks
        limit = self.settings.smtpd_client_connection_count_limit
        if not limit or policy.in_networks(ip, self.settings.mynetworks):
            return False
        return self._per_client[ip] > limit

    async def _refuse_connection(self, conn: Connection) -> None:
        # no name lookup for a client refused anyway
        host = "localhost" if conn.is_loopback else "unknown"
        log.warning("warning: too many connections from %s[%s]", host, conn.peer_ip)
        text = f"{self.settings.myhostname} Error: too many connections"
        await conn.write(r.Reply.of(421, "4.7.0", text).to_bytes())
        await conn.close()

    async def client_hostname(self, conn: Connection) -> str:
        """postfix's client name: `localhost` on loopback, else the
        forward-confirmed PTR name or `unknown`."""
        if conn.is_loopback:
            return "localhost"
        if not self.settings.smtpd_peername_lookup:
            return "unknown"
        return await self.dns.client_hostname(conn.peer_ip)


Handler = Callable[["_Session", ev.Event], Awaitable[r.Reply]]


class _Session:
    """One connection: the core, the envelope being built, the log."""

    def __init__(self, service: SmtpService, conn: Connection) -> None:
        settings = service.settings
        self.service = service
        self.settings = settings
        self.conn = conn
        limit = settings.message_size_limit or UNLIMITED_MESSAGE_BYTES
        self.core = ServerConnection(
            hostname=settings.myhostname,
            max_message_bytes=limit,
            is_tls=conn.is_tls,
            strict_rfc821_envelopes=settings.strict_rfc821_envelopes,
        )
        self.client_hostname = "localhost" if conn.is_loopback else "unknown"
        self.client = f"{self.client_hostname}[{conn.peer_ip}]"
        self.helo = ""
        self.protocol = "SMTP"
        self.sasl_username = ""
        self.sasl_method = ""
        self.exchange: sasl.Exchange | None = None
        self.counts: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.last_verb = "CONNECT"
        self._out = bytearray()
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self.queue_id = ""
        self.mail_from = ""
        self.mail_event: ev.MailFrom | None = None
        self.recipients: list[Recipient] = []
        self.sender_domain_status: policy.DomainStatus | None = None

    # the command loop ----------------------------------------------------

    async def run(self) -> None:
        self.client_hostname = await self.service.client_hostname(self.conn)
        self.client = f"{self.client_hostname}[{self.conn.peer_ip}]"
        log.info("connect from %s", self.client)
        self.conn.set_timeout(self.settings.smtpd_timeout)
        try:
            banner = self.settings.smtpd_banner
            self._out += self.core.send(r.Reply.of(220, None, banner))
            await self._loop()
        except IdleTimeout:
            log.info("timeout after %s from %s", self.last_verb, self.client)
            text = f"{self.settings.myhostname} Error: timeout exceeded"
            await self._final(r.Reply.of(421, "4.4.2", text))
        except (ConnectionError, ssl.SSLError, TimeoutError):
            log.info("lost connection after %s from %s", self.last_verb, self.client)
        finally:
            log.info("disconnect from %s %s", self.client, self._summary())

    async def _loop(self) -> None:
        while True:
            event = self.core.next_event()
            if isinstance(event, ev.NeedData):
                await self._flush()
                self.core.receive_data(await self.conn.read())
                continue
            if isinstance(event, ev.ConnectionClosed):
                await self._flush()
                return
            self._count(event)
            reply = await self._answer(event)
            self._out += self.core.send(reply)
            self._tally(event, reply)
            if self.core.state is State.TLS:
                await self._flush()
                await self._start_tls()
            elif self.core.is_closed:
                await self._flush()
                return

    async def _answer(self, event: ev.Event) -> r.Reply:
        handler = _HANDLERS[type(event)]
        try:
            return await handler(self, event)
        except r.SmtpError as exc:
            return exc.reply
        except Exception:
            log.exception(
                "error: %s: internal error after %s", self.client, self.last_verb
            )
            return INTERNAL_ERROR

    async def _flush(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            await self.conn.write(data)

    async def _final(self, reply: r.Reply) -> None:
        self._out += self.core.send(reply)
        try:
            await self._flush()
        except ConnectionError:
            return

    async def _start_tls(self) -> None:
        discarded = self.core.discarded_after_starttls
        if discarded:
            log.info(
                "%s: discarded %d plaintext bytes sent after STARTTLS",
                self.client,
                discarded,
            )
        await self.conn.start_tls()
        self.core.tls_established()
        self.helo = ""
        self.protocol = "SMTP"
        self._reset_transaction()
        log.info(
            "Anonymous TLS connection established from %s: %s with cipher %s",
            self.client,
            self.conn.tls_version(),
            self.conn.tls_cipher(),
        )

    def _count(self, event: ev.Event) -> None:
        verb = _verb_of(event)
        if verb:
            self.counts[verb] += 1
            self.last_verb = verb.upper()

    def _tally(self, event: ev.Event, reply: r.Reply) -> None:
        verb = _verb_of(event)
        if verb and reply.is_positive:
            self.accepted[verb] += 1
        if isinstance(event, ev.Refused) and event.in_data and event.verb == "DATA":
            # the 354 to DATA was counted as accepted: take it back
            self.accepted["data"] -= 1

    def _summary(self) -> str:
        parts = []
        for verb, total in self.counts.items():
            good = self.accepted[verb]
            parts.append(
                f"{verb}={good}" if good == total else f"{verb}={good}/{total}"
            )
        total = sum(self.counts.values())
        good = sum(self.accepted.values())
        shown = f"{good}" if good == total else f"{good}/{total}"
        return " ".join([*parts, f"commands={shown}"])

    # HELO / EHLO ---------------------------------------------------------

    async def _on_helo(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.Helo)
        self.helo = event.domain
        self.protocol = "SMTP"
        self._reset_transaction()
        return r.Reply.of(250, None, self.settings.myhostname)

    async def _on_ehlo(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.Ehlo)
        self.helo = event.domain
        self.protocol = "ESMTP"
        self._reset_transaction()
        return r.Reply(250, None, (self.settings.myhostname, *self._keywords()))

    def _keywords(self) -> list[str]:
        limit = self.settings.message_size_limit
        words = ["PIPELINING", f"SIZE {limit}" if limit else "SIZE", "VRFY"]
        if not self.core.is_tls and self.conn.tls_available:
            words.append("STARTTLS")
        if self._auth_offered():
            words.append("AUTH " + " ".join(sasl.MECHANISMS))
        words += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]
        if self.settings.smtputf8_enable:
            words.append("SMTPUTF8")
        # RFC 3030 CHUNKING; BINARYMIME is not offered (case 006)
        words.append("CHUNKING")
        return words

    def _auth_offered(self) -> bool:
        settings = self.settings
        if self.service.userdb is None or not settings.smtpd_sasl_auth_enable:
            return False
        if self.sasl_username:
            return False
        protected = self.core.is_tls or self.conn.is_loopback
        return protected or not settings.smtpd_tls_auth_only

    # the transaction -----------------------------------------------------

    async def _on_mail(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.MailFrom)
        if self.service.submission and not self.sasl_username:
            raise r.SmtpError(AUTH_REQUIRED)
        if event.params.smtputf8 and not self.settings.smtputf8_enable:
            raise r.SmtpError(r.UNKNOWN_PARAMETER)
        self._reset_transaction()
        self.mail_from = event.address

        if self.service.checks_sender_domain:
            self.sender_domain_status = await self._domain_status(event.address)
        verdict = await self._judge_sender()
        if verdict.action is policy.Action.REJECT and verdict.reply is not None:
            reply = self._refusal(verdict.reply)
            self._log_reject("MAIL", reply)
            self._reset_transaction()
            raise r.SmtpError(reply)
        self.mail_event = event
        return r.SENDER_OK

    async def _judge_sender(self) -> policy.Verdict:
        settings = self.settings
        login_check = settings.smtpd_sender_login_check
        restrictions = settings.smtpd_sender_restrictions
        if not restrictions and not (login_check and self.sasl_username):
            return policy.PERMIT
        facts = self._facts()
        return await asyncio.to_thread(
            policy.check_sender,
            restrictions,
            facts,
            self.service.domains,
            self.service.access_tables.lookup,
            login_check=login_check,
        )

    async def _domain_status(self, address: str) -> policy.DomainStatus | None:
        """DNS status of address's domain for reject_unknown_*_domain;
        None when it is not to be looked up (ours, a literal, none)."""
        domain = await asyncio.to_thread(
            policy.domain_to_look_up, address, self.service.domains
        )
        if domain is None:
            return None
        return await self.service.dns.domain_status(domain)

    def _facts(
        self,
        recipient: str = "",
        *,
        is_unknown_local: bool = False,
        recipient_domain_status: policy.DomainStatus | None = None,
    ) -> policy.Facts:
        return policy.Facts(
            client_ip=self.conn.peer_ip,
            client_hostname=self.client_hostname,
            helo=self.helo,
            sasl_username=self.sasl_username,
            sender=self.mail_from,
            recipient=recipient,
            is_unknown_local=is_unknown_local,
            sender_domain_status=self.sender_domain_status,
            recipient_domain_status=recipient_domain_status,
        )

    async def _on_rcpt(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.RcptTo)
        address = event.address
        if len(self.recipients) >= self.settings.smtpd_recipient_limit:
            self._log_reject("RCPT", r.TOO_MANY_RECIPIENTS, address)
            raise r.SmtpError(r.TOO_MANY_RECIPIENTS)

        status = None
        if self.service.checks_recipient_domain:
            status = await self._domain_status(address)
        key: _VerdictKey = (
            address,
            status,
            self.conn.peer_ip,
            self.client_hostname,
            self.helo,
            self.sasl_username,
            self.mail_from,
        )
        verdict = self.service.cached_verdict(key)
        if verdict is None:
            verdict = await asyncio.to_thread(self._judge_recipient, address, status)
            self.service.remember_verdict(key, verdict)
        if verdict.action is policy.Action.REJECT and verdict.reply is not None:
            reply = self._recipient_refusal(verdict, address)
            self._log_reject("RCPT", reply, address)
            raise r.SmtpError(reply)

        if not self.recipients:
            self._open_queue_file()
        notify = event.params.notify or ()
        self.recipients.append(Recipient(address, event.params.orcpt, notify))
        return r.RECIPIENT_OK

    def _open_queue_file(self) -> None:
        """The first recipient is accepted: the transaction gets its
        queue id and its `client=` line (postfix's cleanup opens the
        queue file here; pflogsumm counts this line as received)."""
        self.queue_id = self.service.spool.new_queue_id()
        if self.sasl_username:
            log.info(
                "%s: client=%s, sasl_method=%s, sasl_username=%s",
                self.queue_id,
                self.client,
                self.sasl_method,
                self.sasl_username,
            )
        else:
            log.info("%s: client=%s", self.queue_id, self.client)

    def _judge_recipient(
        self, address: str, status: policy.DomainStatus | None
    ) -> policy.Verdict:
        """Runs in a worker thread: alias files and access tables are
        read from disk."""
        try:
            self.service.local_recipients.resolve(address)
            unknown = False
        except UnknownRecipient:
            unknown = True
        facts = self._facts(
            recipient=address,
            is_unknown_local=unknown,
            recipient_domain_status=status,
        )
        return policy.check_recipient(
            self.settings.smtpd_relay_restrictions,
            self.settings.smtpd_recipient_restrictions,
            facts,
            self.service.domains,
            self.service.access_tables.lookup,
            client_restrictions=self.settings.smtpd_client_restrictions,
            helo_restrictions=self.settings.smtpd_helo_restrictions,
        )

    def _recipient_refusal(self, verdict: policy.Verdict, address: str) -> r.Reply:
        assert verdict.reply is not None
        text = verdict.reply.lines[0]
        if verdict.reply is policy.UNKNOWN_USER:
            text = f"Recipient address rejected: {text}"
        if not text.startswith("<"):
            shown = f"<{address}>: " if address.isascii() else ""
            text = shown + text
        return self._refusal(verdict.reply.with_text(text))

    def _refusal(self, reply: r.Reply) -> r.Reply:
        # the queue id (or connection id) leads a forwarded bounce to the log
        tag = self.queue_id or self.conn.conn_id
        return reply.with_text(f"{reply.lines[0]} ({tag})")

    def _log_reject(self, verb: str, reply: r.Reply, address: str = "") -> None:
        to = f" to=<{address}>" if verb != "MAIL" else ""
        log.info(
            "%s: reject: %s from %s: %s; from=<%s>%s proto=%s helo=<%s>",
            self.queue_id or "NOQUEUE",
            verb,
            self.client,
            reply,
            self.mail_from,
            to,
            self.protocol,
            self.helo,
        )

    async def _on_data(self, event: ev.Event) -> r.Reply:
        restrictions = self.settings.smtpd_data_restrictions
        if restrictions:
            verdict = await asyncio.to_thread(
                policy.evaluate,
                restrictions,
                self._facts(),
                self.service.domains,
                self.service.access_tables.lookup,
            )
            if verdict.action is policy.Action.REJECT:
                assert verdict.reply is not None
                reply = self._refusal(verdict.reply)
                self._log_reject("DATA", reply)
                raise r.SmtpError(reply)
        return r.START_DATA

    async def _on_bdat_chunk(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.BdatChunk)
        return r.Reply.of(250, "2.0.0", f"Ok: {event.size} octets")

    async def _on_data_received(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.DataReceived)
        assert self.mail_event is not None
        params = self.mail_event.params
        envelope = Envelope(
            queue_id=self.queue_id,
            mail_from=self.mail_from,
            recipients=list(self.recipients),
            arrival_time=self.service.clock(),
            helo=self.helo,
            client_ip=self.conn.peer_ip,
            client_hostname=self.client_hostname,
            sasl_username=self.sasl_username,
            size=event.size,
            body_type=params.body or "",
            smtputf8=params.smtputf8,
            dsn_ret=params.ret,
            dsn_envid=params.envid,
        )
        data = self._received_header(envelope) + event.data
        queue_id = self.queue_id
        self._reset_transaction()
        try:
            queue_id = await self.service.spool.enqueue(envelope, data)
        except OSError:
            log.exception("error: %s: queue file write error", queue_id)
            raise r.SmtpError(QUEUE_WRITE_ERROR) from None
        if event.has_bare_lf:
            log.info(
                "%s: bare <LF> normalised to <CR><LF> from %s", queue_id, self.client
            )
        return r.Reply.of(250, "2.0.0", f"Ok: queued as {queue_id}")

    def _received_header(self, envelope: Envelope) -> bytes:
        """RFC 5321 4.4 trace line, in postfix's layout."""
        ip = self.conn.peer_ip
        literal = f"IPv6:{ip}" if ":" in ip else ip
        lines = [
            f"Received: from {self.helo} ({self.client_hostname} [{literal}])",
        ]
        if self.core.is_tls:
            version, cipher = self.conn.tls_version(), self.conn.tls_cipher()
            lines.append(f"\t(using {version} with cipher {cipher})")
        by = f"\tby {self.settings.myhostname} (Roost) with {self._with(envelope)}"
        lines.append(f"{by} id {envelope.queue_id}")
        date = email.utils.formatdate(envelope.arrival_time, localtime=True)
        if len(envelope.recipients) == 1:
            lines.append(f"\tfor <{envelope.recipients[0].address}>; {date}")
        else:
            lines[-1] += ";"
            lines.append(f"\t{date}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def _with(self, envelope: Envelope) -> str:
        """RFC 3848 / RFC 6531 3.7.3 protocol names."""
        if self.protocol == "SMTP":
            return "SMTP"
        suffix = ("S" if self.core.is_tls else "") + ("A" if self.sasl_username else "")
        if envelope.smtputf8:
            return "UTF8SMTP" + suffix
        return "ESMTP" + suffix

    # the rest of the verbs ---------------------------------------------

    async def _on_rset(self, event: ev.Event) -> r.Reply:
        self._reset_transaction()
        return r.OK

    async def _on_noop(self, event: ev.Event) -> r.Reply:
        return r.OK

    async def _on_quit(self, event: ev.Event) -> r.Reply:
        return r.BYE

    async def _on_vrfy(self, event: ev.Event) -> r.Reply:
        return r.CANNOT_VRFY

    async def _on_help(self, event: ev.Event) -> r.Reply:
        return r.HELP

    async def _on_refused(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.Refused)
        if event.in_data:
            self._log_reject(event.verb, event.reply, "")
            self._reset_transaction()
        else:
            log.info("%s: %s: %s", self.client, event.reason, event.reply)
        return event.reply

    async def _on_starttls(self, event: ev.Event) -> r.Reply:
        if not self.conn.tls_available:
            return TLS_UNAVAILABLE
        return r.READY_FOR_TLS

    # AUTH (RFC 4954) ---------------------------------------------------

    async def _on_auth(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.Auth)
        if not self._auth_offered():
            protected = self.core.is_tls or self.conn.is_loopback
            if self.service.userdb is not None and not protected:
                raise r.SmtpError(ENCRYPTION_REQUIRED)
            raise r.SmtpError(AUTH_NOT_ENABLED)
        return await self._sasl_step(event.mechanism, event.initial_response)

    async def _on_auth_response(self, event: ev.Event) -> r.Reply:
        assert isinstance(event, ev.AuthResponse)
        if event.is_cancelled:
            self.exchange = None
            return r.AUTH_ABORTED
        return await self._sasl_step("", event.data)

    async def _sasl_step(self, mechanism: str, response: bytes | None) -> r.Reply:
        try:
            if mechanism:
                self.exchange = sasl.Exchange(mechanism)
            assert self.exchange is not None
            step = self.exchange.step(response)
        except sasl.SaslError as exc:
            return self._sasl_failure(exc)
        if isinstance(step, bytes):
            return r.Reply.of(334, None, step.decode("ascii"))
        return await self._login(step)

    def _sasl_failure(self, exc: sasl.SaslError) -> r.Reply:
        mechanism = self.exchange.mechanism if self.exchange else "?"
        self.exchange = None
        if exc.failure is sasl.Failure.MECHANISM:
            return AUTH_MECHANISM
        if exc.failure is sasl.Failure.ABORTED:
            return r.AUTH_ABORTED
        if exc.failure is sasl.Failure.BASE64:
            return AUTH_BAD_BASE64
        log.info("warning: %s: SASL %s: malformed response", self.client, mechanism)
        return AUTH_FAILED

    async def _login(self, creds: sasl.Credentials) -> r.Reply:
        assert self.exchange is not None
        assert self.service.userdb is not None
        mechanism = self.exchange.mechanism
        self.exchange = None
        keys = (self.conn.peer_ip, creds.authcid.lower())
        throttle = self.service.throttle
        delay_s = throttle.delay_s(*keys)
        if delay_s:
            await asyncio.sleep(delay_s)
        user = await sasl.authenticate(self.service.userdb, creds)
        if user is None:
            throttle.record_failure(*keys)
            log.info(
                "warning: %s: SASL %s authentication failed", self.client, mechanism
            )
            return AUTH_FAILED
        throttle.record_success(*keys)
        self.sasl_username = user
        self.sasl_method = mechanism
        return AUTH_OK


_HANDLERS: dict[type, Handler] = {
    ev.Helo: _Session._on_helo,
    ev.Ehlo: _Session._on_ehlo,
    ev.MailFrom: _Session._on_mail,
    ev.RcptTo: _Session._on_rcpt,
    ev.Data: _Session._on_data,
    ev.DataReceived: _Session._on_data_received,
    ev.BdatChunk: _Session._on_bdat_chunk,
    ev.Rset: _Session._on_rset,
    ev.Noop: _Session._on_noop,
    ev.Quit: _Session._on_quit,
    ev.Vrfy: _Session._on_vrfy,
    ev.Help: _Session._on_help,
    ev.Refused: _Session._on_refused,
    ev.StartTls: _Session._on_starttls,
    ev.Auth: _Session._on_auth,
    ev.AuthResponse: _Session._on_auth_response,
}

_VERB_OF: dict[type, str] = {
    ev.Helo: "helo",
    ev.Ehlo: "ehlo",
    ev.MailFrom: "mail",
    ev.RcptTo: "rcpt",
    ev.Data: "data",
    ev.BdatChunk: "bdat",
    ev.Rset: "rset",
    ev.Noop: "noop",
    ev.Quit: "quit",
    ev.Vrfy: "vrfy",
    ev.Help: "help",
    ev.StartTls: "starttls",
    ev.Auth: "auth",
}


def _verb_of(event: ev.Event) -> str:
    """The verb an event counts as in the disconnect summary, or ""."""
    if isinstance(event, ev.DataReceived):
        # DATA was counted at its command; the LAST chunk is a BDAT
        return "bdat" if event.chunked else ""
    if isinstance(event, ev.Refused):
        if event.in_data:
            return "bdat" if event.verb == "BDAT" else ""
        verb = event.verb.lower()
        return verb if verb in _VERB_OF.values() else "unknown"
    return _VERB_OF.get(type(event), "")
