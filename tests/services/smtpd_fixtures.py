"""A real smtpd on a loopback port (roost.net), with fakes behind it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from roost.config import Settings, from_values
from roost.delivery.local import UnknownRecipient
from roost.net import Listener
from roost.net import tls as net_tls
from roost.queue import Envelope
from roost.services.smtpd import SmtpService

USERS = {"alice": "alice-pass", "bob": "bob-pass"}
LOCAL_DOMAINS = {"example.test", "xn--bcher-kva.test"}


class FakeSpool:
    """Keeps what was enqueued; ids are counted."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bytes]] = []
        self._n = 0

    def new_queue_id(self) -> str:
        self._n += 1
        return f"Q{self._n:04d}"

    async def enqueue(self, envelope: Envelope, data: bytes) -> str:
        self.messages.append((envelope, data))
        return envelope.queue_id


class FakeUsers:
    async def averify(self, name: str, password: str) -> str | None:
        name = name.lower().split("@")[0]
        return name if USERS.get(name) == password else None


class FakeRecipients:
    """Local users alice and bob in LOCAL_DOMAINS; the rest is remote."""

    def is_our_domain(self, domain: str) -> bool:
        return domain.lower() in LOCAL_DOMAINS

    def resolve(self, address: str) -> list[str] | None:
        local, _, domain = address.rpartition("@")
        if not domain:
            return ["postmaster"]
        if domain.lower() not in LOCAL_DOMAINS and domain != "bücher.test":
            return None
        user = local.strip('"').lower().split("+")[0]
        if user in USERS or user == "postmaster":
            return [user]
        raise UnknownRecipient(address)


@dataclass
class Server:
    settings: Settings
    spool: FakeSpool
    port: int
    loop: asyncio.AbstractEventLoop
    listener: Listener
    thread: threading.Thread
    service: SmtpService
    clients: list[Raw] = field(default_factory=list)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def raw(self) -> Raw:
        """A raw client, closed when the server stops."""
        client = Raw(self.connect())
        self.clients.append(client)
        return client

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        for client in self.clients:
            client.close()
        fut = asyncio.run_coroutine_threadsafe(self.listener.stop(1.0), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def make_settings(tmp_path: Path, **values: str) -> Settings:
    base = {
        "myhostname": "mx.example.test",
        "mydestination": "example.test, bücher.test",
        "data_directory": str(tmp_path),
        "message_size_limit": "1048576",
    }
    base.update(values)
    return from_values(base)


def start_server(
    tmp_path: Path,
    *,
    submission: bool = False,
    implicit_tls: bool = False,
    **values: str,
) -> Server:
    settings = make_settings(tmp_path, **values)
    spool = FakeSpool()
    service = SmtpService(
        settings,
        spool,
        FakeUsers(),
        FakeRecipients(),
        submission=submission,
        implicit_tls=implicit_tls,
    )
    cert, key = net_tls.certificate_paths(None, None, tmp_path, "mx.example.test")
    ctx = net_tls.server_context(cert, key)
    listener = Listener(
        "smtpd",
        service.handle,
        port=0,
        addresses=["127.0.0.1"],
        ssl_context=ctx,
        implicit_tls=implicit_tls,
        max_per_client=0,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
    port = listener.bound_ports[0]
    return Server(settings, spool, port, loop, listener, thread, service)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


class Raw:
    """A raw-socket SMTP client: send exact bytes, read whole replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, list[bytes]]:
        """One whole reply: (code, lines); (0, []) at EOF."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return 0, lines
            lines.append(line)
            if line[3:4] == b" ":
                return int(line[:3]), lines

    def code(self) -> int:
        return self.reply()[0]

    def command(self, line: bytes) -> int:
        self.send(line + b"\r\n")
        return self.code()

    def start_tls(self) -> None:
        ctx = net_tls.client_context(verify=False)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.example.test")
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except (OSError, ssl.SSLError):
            pass


def open_raw(server: Server) -> Raw:
    raw = server.raw()
    assert raw.code() == 220
    return raw
