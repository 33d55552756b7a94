"""Peers for the issue 3 (real MTA) tests: a real postfix, a DNS server
and a scripted SMTP server, all on 127.0.0.1.

- `running_postfix` starts a private postfix instance (its own
  config_directory, queue_directory and data_directory under a temporary
  directory; `inet_interfaces = 127.0.0.1`, smtpd on a free port, no DNS
  at all) that files mail for its virtual domain into Maildirs and relays
  the domains it is given to fixed `[127.0.0.1]:port` next hops, with
  opportunistic STARTTLS both ways. It never touches the system postfix.
- `MTA_ZONE` is the `mta.test` zone for tests.support.dns_server: every
  mail domain has only an MX record (no address of its own), so mail
  reaching the right port proves the MX was used.
- `ScriptedSmtp` is a small SMTP server in a thread of its own that
  answers from a script (e.g. 451 to the first RCPT, then 250) and
  records what it was sent; the message counts only when it was given
  a 2xx at the end of DATA.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from roost.net.tls import make_self_signed
from tests.conftest import need_binary, poll
from tests.support.postfix import MASTER_CF

WAIT_S = 60.0

MTA_ZONE = """\
ns IN A 127.0.0.1
; each mail domain: an MX only, its host an A record on loopback
remote IN MX 10 mx.remote
mx.remote IN A 127.0.0.1
scripted IN MX 10 mx.scripted
mx.scripted IN A 127.0.0.1
down IN MX 10 mx.down
mx.down IN A 127.0.0.1
"""


# Nothing here may reach another host: no DNS (smtp_dns_support_level
# disabled, no peer name lookups), every relayed domain has a fixed
# [127.0.0.1]:port next hop, everything else is refused.
_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
mydomain = mta.test
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains = {relay_domains}
transport_maps = texthash:{d}/etc/transport
default_transport = error:this test postfix relays nothing else
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
virtual_mailbox_domains = {virtual_domain}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
smtpd_tls_cert_file = {d}/etc/cert.pem
smtpd_tls_key_file = {d}/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtp_tls_security_level = may
smtp_tls_loglevel = 1
alias_maps =
alias_database =
biff = no
# a neutral remote: cleanup leaves headers from any client as they are
local_header_rewrite_clients =
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Postfix:
    """A running private postfix; `mailbox(user)` lists user's mail."""

    directory: Path
    port: int
    virtual_domain: str

    def maildir(self, user: str) -> Path:
        return self.directory / "mail" / user

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def messages(self, user: str) -> list[bytes]:
        found = []
        for sub in ("new", "cur"):
            box = self.maildir(user) / sub
            if box.is_dir():
                found.extend(p.read_bytes() for p in sorted(box.iterdir()))
        return found

    def wait_messages(self, user: str, count: int) -> list[bytes]:
        poll(
            lambda: len(self.messages(user)) >= count,
            WAIT_S,
            f"{count} message(s) for {user}@{self.virtual_domain} in postfix",
        )
        return self.messages(user)

    def wait_log(self, pattern: str) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.log(), re.M)
            if match:
                found.append(match)
            return match is not None

        poll(seen, WAIT_S, f"postfix log line {pattern!r}")
        return found[0]


def _postfix(binary: str, directory: Path, *args: str) -> None:
    subprocess.run(
        [binary, "-c", str(directory / "etc"), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextlib.contextmanager
def running_postfix(
    *,
    virtual_domain: str,
    users: tuple[str, ...],
    relay: Mapping[str, int] | None = None,
    hostname: str = "pf.mta.test",
) -> Iterator[Postfix]:
    """A postfix on 127.0.0.1 that keeps mail for users@virtual_domain
    and relays each domain in relay to [127.0.0.1]:port; stopped (its
    own instance, by its config directory) on exit."""
    binary = need_binary("postfix")
    owner = pwd.getpwnam("postfix")
    # postfix's daemons run as the postfix user: pytest's 0700 tmp_path
    # is closed to them, so the instance lives in a directory of its own
    directory = Path(tempfile.mkdtemp(prefix="roost-mta-postfix-"))
    os.chmod(directory, 0o755)
    for sub in ("etc", "spool", "data", "mail"):
        (directory / sub).mkdir()
    for sub in ("data", "mail"):
        os.chown(directory / sub, owner.pw_uid, owner.pw_gid)
    etc = directory / "etc"
    make_self_signed(etc / "cert.pem", etc / "key.pem", hostname)
    vmailbox = "".join(f"{u}@{virtual_domain} {u}/\n" for u in users)
    (etc / "vmailbox").write_text(vmailbox)
    relay = dict(relay or {})
    transport = "".join(f"{d} smtp:[127.0.0.1]:{p}\n" for d, p in relay.items())
    (etc / "transport").write_text(transport)

    port = free_port()
    main_cf = _MAIN_CF.format(
        d=directory,
        uid=owner.pw_uid,
        gid=owner.pw_gid,
        hostname=hostname,
        relay_domains=", ".join(relay),
        virtual_domain=virtual_domain,
    )
    (etc / "main.cf").write_text(main_cf)
    (etc / "master.cf").write_text(MASTER_CF.format(port=port))
    _postfix(binary, directory, "start")
    try:
        poll(lambda: _accepts(port), WAIT_S, "postfix's smtpd")
        yield Postfix(directory, port, virtual_domain)
    finally:
        _postfix(binary, directory, "stop")
        shutil.rmtree(directory, ignore_errors=True)


# -- a scripted SMTP server ----------------------------------------------------


Script = Callable[[str, str], bytes | None]


@dataclass
class Session:
    commands: list[str] = field(default_factory=list)


@dataclass
class ScriptedSmtp:
    """An SMTP server on 127.0.0.1 in its own thread and event loop.

    `replies` maps a verb ("RCPT", "MAIL", "." for the end of DATA) to
    replies used one after the other (then 250); `rules` is a list of
    (verb, substring of the argument, reply) tried first, for every
    command that matches. A reply of None drops the connection.
    """

    replies: dict[str, list[bytes | None]] = field(default_factory=dict)
    rules: list[tuple[str, str, bytes]] = field(default_factory=list)
    port: int = 0
    sessions: list[Session] = field(default_factory=list)
    accepted: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> ScriptedSmtp:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            # sessions a client keeps open for reuse end here, before
            # the loop closes under them
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await server.wait_closed()

        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        loop.close()
        self._loop = self._server = None

    def messages(self) -> list[tuple[str, list[str], bytes]]:
        with self._lock:
            return list(self.accepted)

    def wait_messages(self, count: int) -> list[tuple[str, list[str], bytes]]:
        poll(
            lambda: len(self.messages()) >= count,
            WAIT_S,
            f"{count} message(s) at the scripted server",
        )
        return self.messages()

    def _reply(self, verb: str, argument: str) -> bytes | None:
        for rule_verb, needle, reply in self.rules:
            if rule_verb == verb and needle in argument:
                return reply
        with self._lock:
            script = self.replies.get(verb)
            if script:
                return script.pop(0)
        return b"354 go ahead" if verb == "DATA" else b"250 2.0.0 Ok"

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session = Session()
        with self._lock:
            self.sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._converse(reader, writer, session)
        except ConnectionError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _converse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        session: Session,
    ) -> None:
        writer.write(b"220 scripted.mta.test ESMTP\r\n")
        sender, recipients = "", []
        while line := await reader.readline():
            command = line.rstrip(b"\r\n").decode("utf-8", "replace")
            session.commands.append(command)
            verb, _, argument = command.partition(" ")
            verb = verb.split(":", 1)[0].upper()
            if verb == "EHLO":
                reply: bytes | None = b"250-scripted.mta.test\r\n250 8BITMIME"
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                reply = self._reply(verb, argument)
            if reply is None:
                return
            if verb == "MAIL":
                sender, recipients = argument, []
            elif verb == "RCPT" and reply.startswith(b"2"):
                recipients.append(argument)
            elif verb == "DATA" and reply.startswith(b"354"):
                writer.write(reply + b"\r\n")
                await writer.drain()
                data = await _read_data(reader)
                reply = self._reply(".", "")
                if reply is None:
                    return
                if reply.startswith(b"2"):
                    with self._lock:
                        self.accepted.append((sender, recipients, data))
            writer.write(reply + b"\r\n")
            await writer.drain()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while (line := await reader.readline()) not in (b".\r\n", b""):
        lines.append(line[1:] if line.startswith(b".") else line)
    return b"".join(lines)


@contextlib.contextmanager
def scripted_smtp(**options: object) -> Iterator[ScriptedSmtp]:
    server = ScriptedSmtp(**options).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def wait_log(read: Callable[[], str], pattern: str, count: int = 1) -> list[str]:
    """Wait until pattern (a regex) matches count lines of read()."""
    found: list[str] = []

    def enough() -> bool:
        found[:] = [m.group(0) for m in re.finditer(pattern, read(), re.M)]
        return len(found) >= count

    poll(enough, WAIT_S, f"{count} log line(s) matching {pattern!r}")
    return found
