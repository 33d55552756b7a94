"""``roost serve``: build every part from the settings and run the listeners.

One process runs everything on one asyncio loop: the SMTP listeners (25,
587, 465), the queue manager with its local and remote transports, and the
IMAP (143, 993) and POP3 (110, 995) listeners.  Blocking work (fsync, hash
verification, Maildir scans) runs in threads, so the loop only moves bytes.

Shutdown on SIGTERM or SIGINT: stop accepting, let sessions finish for a
grace period, cancel the rest (a session cancelled before its reply promised
nothing), then stop the queue manager, which leaves unfinished deliveries in
the queue for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from roost.auth import AuthThrottle, UserDB
from roost.config import Settings
from roost.delivery.local import LocalDelivery, LocalRecipients
from roost.delivery.smtp import RemoteDelivery
from roost.mailstore.store import Mailstore
from roost.net import Handler, Listener, tls
from roost.queue import Spool
from roost.queue.manager import QueueManager
from roost.services.imapd import ImapService
from roost.services.pop3d import Pop3Service
from roost.services.smtpd import SmtpService

log = logging.getLogger("roost.master")

SHUTDOWN_GRACE_S = 10.0

_TOO_MANY = {
    "smtp": b"421 4.7.0 Error: too many connections from your address\r\n",
    "imap": b"* BYE Too many connections from your address\r\n",
    "pop3": b"-ERR [SYS/TEMP] Too many connections from your address\r\n",
}


class MailLogFormatter(logging.Formatter):
    """Lines in the syslog shape postfix writes, so log tools read them.

    ``Dec  4 17:30:00 host roost/smtpd[123]: 7QK2M9PA4B: client=...`` -
    pflogsumm reads this with ``--syslog-name=roost``.
    """

    def __init__(self, hostname: str) -> None:
        super().__init__()
        self.hostname = hostname.split(".", 1)[0] or "localhost"

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%b %d %H:%M:%S", time.localtime(record.created))
        # syslog pads the day with a space, not a zero ("Dec  4")
        if stamp[4] == "0":
            stamp = stamp[:4] + " " + stamp[5:]
        component = record.name.removeprefix("roost.") or "roost"
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        line = f"{stamp} {self.hostname} roost/{component}[{os.getpid()}]: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(settings: Settings) -> None:
    """Log to stderr, and to ``maillog_file`` too when one is set."""
    formatter = MailLogFormatter(settings.myhostname)
    root = logging.getLogger("roost")
    root.handlers.clear()
    root.setLevel(settings.log_level.upper())
    root.propagate = False
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    maillog = getattr(settings, "maillog_file", None)
    if maillog:
        Path(maillog).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(maillog)
        handler.setFormatter(formatter)
        root.addHandler(handler)


@dataclass
class Server:
    """Everything ``serve`` starts, so tests can run it in-process too."""

    settings: Settings
    listeners: list[Listener]
    queue_manager: QueueManager
    remote: RemoteDelivery

    @classmethod
    def build(cls, settings: Settings) -> Server:
        """Make directories and parts; raises OSError on unusable paths."""
        for path in (settings.data_directory, settings.mailbox_directory):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings.users_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

        userdb = UserDB(settings.users_file)
        spool = Spool(settings.queue_directory)
        recipients = LocalRecipients(settings, userdb)
        remote = RemoteDelivery(settings)
        manager = QueueManager(
            settings, spool, LocalDelivery(settings, recipients), remote=remote
        )
        cert, key = tls.certificate_paths(
            settings.tls_cert_file,
            settings.tls_key_file,
            settings.data_directory,
            settings.myhostname,
        )
        context = tls.server_context(cert, key)
        throttle = AuthThrottle()
        mailstore = Mailstore(settings.mailbox_directory)

        def smtp(submission: bool, implicit: bool) -> Handler:
            service = SmtpService(
                settings,
                spool,
                userdb,
                recipients,
                submission=submission,
                implicit_tls=implicit,
                throttle=throttle,
            )
            return service.handle

        def imap(implicit: bool) -> Handler:
            service = ImapService(
                settings, userdb, mailstore, implicit, throttle=throttle
            )
            return service.handle

        def pop3(implicit: bool) -> Handler:
            service = Pop3Service(
                settings,
                userdb,
                implicit,
                throttle=throttle,
                lock_session=settings.pop3_lock_session,
            )
            return service.handle

        plan: list[tuple[str, int | None, Handler, bool, str]] = [
            ("smtpd", settings.smtp_port, smtp(False, False), False, "smtp"),
            ("submission", settings.submission_port, smtp(True, False), False, "smtp"),
            ("smtps", settings.smtps_port, smtp(True, True), True, "smtp"),
            ("imapd", settings.imap_port, imap(False), False, "imap"),
            ("imapsd", settings.imaps_port, imap(True), True, "imap"),
            ("pop3d", settings.pop3_port, pop3(False), False, "pop3"),
            ("pop3sd", settings.pop3s_port, pop3(True), True, "pop3"),
        ]
        listeners = [
            Listener(
                name=name,
                handler=handler,
                port=port,
                addresses=list(settings.inet_interfaces),
                ssl_context=context,
                implicit_tls=implicit,
                # smtpd counts per client itself, exempting mynetworks as
                # postfix does; the listener's limit guards IMAP and POP3.
                max_per_client=0
                if kind == "smtp"
                else settings.smtpd_client_connection_count_limit,
                too_many_reply=_TOO_MANY[kind],
            )
            for name, port, handler, implicit, kind in plan
            if port is not None
        ]
        return cls(settings, listeners, manager, remote)

    async def start(self) -> None:
        """Start the queue manager, then bind every listener."""
        await self.queue_manager.start()
        try:
            for listener in self.listeners:
                await listener.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await asyncio.gather(
            *(listener.stop(SHUTDOWN_GRACE_S) for listener in self.listeners)
        )
        await self.queue_manager.stop()
        await self.remote.close()


async def _run(settings: Settings) -> int:
    server = Server.build(settings)
    try:
        await server.start()
    except TimeoutError:
        log.error(
            "the queue in %s is in use by another server", settings.queue_directory
        )
        return 1
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    log.info(
        "daemon started -- version Roost %s, configuration %s",
        _version(),
        settings.config_file or "built-in defaults",
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("terminating on signal")
    await server.stop()
    log.info("stopped")
    return 0


def _version() -> str:
    from roost import __version__

    return __version__


def serve(settings: Settings) -> int:
    """Run the server in the foreground until SIGTERM/SIGINT; exit code."""
    setup_logging(settings)
    socket.setdefaulttimeout(None)
    try:
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return 0
