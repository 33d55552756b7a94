"""A real IMAP service on a loopback port (roost.net), with a real
mailstore in a temporary directory and a fake user database."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from roost.auth import AuthThrottle
from roost.config import Settings, from_values
from roost.mailstore.store import Mailstore, create_user
from roost.net import Listener
from roost.net import tls as net_tls
from roost.services.imapd import ImapService

USERS = {"alice": "alice-pass", "bob": "bob-pass", "al": "al-pass"}


class FakeUsers:
    """Stands in for roost.auth.UserDB: plain names, plain passwords."""

    async def averify(self, name: str, password: str) -> str | None:
        return name if USERS.get(name) == password else None


@dataclass
class ImapServer:
    settings: Settings
    port: int
    loop: asyncio.AbstractEventLoop
    listener: Listener
    thread: threading.Thread
    mailstore: Mailstore
    sockets: list[socket.socket] = field(default_factory=list)

    def maildir(self, user: str) -> Path:
        return self.settings.mailbox_directory / user / "Maildir"

    def raw(self) -> Raw:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.sockets.append(sock)
        client = Raw(sock)
        client.read_line()  # greeting
        return client

    def call(self, coro):  # type: ignore[no-untyped-def]
        """Run a coroutine on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)


class Raw:
    """A byte-level client: send exact bytes, read lines and literals."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def read_exact(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_response(self, tag: bytes) -> list[bytes]:
        """Lines (literals inlined) up to and including the tagged one."""
        lines: list[bytes] = []
        while True:
            line = self.read_line()
            while line.endswith(b"}\r\n") and b"{" in line:
                count = int(line[line.rindex(b"{") + 1 : -3].rstrip(b"+"))
                line += self.read_exact(count) + self.read_line()
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: str, text: str | bytes) -> list[bytes]:
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.read_response(tag.encode())


def _settings(tmp_path: Path) -> Settings:
    return from_values(
        {
            "data_directory": str(tmp_path / "data"),
            "queue_directory": str(tmp_path / "queue"),
            "myhostname": "mail.example.test",
            "mydomain": "example.test",
            "imap_idle_timeout": "60s",
            "message_size_limit": "1000000",
        },
        base_dir=tmp_path,
    )


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[ImapServer]:
    settings = _settings(tmp_path)
    for user in USERS:
        create_user(settings, user)
    loop = asyncio.new_event_loop()
    mailstore = Mailstore(settings.mailbox_directory)
    throttle = AuthThrottle(free_failures=1000)
    cert, key = net_tls.certificate_paths(None, None, tmp_path, "mail.example.test")
    context = net_tls.server_context(cert, key)
    service = ImapService(settings, FakeUsers(), mailstore, throttle=throttle)
    listener = Listener("imap", service.handle, 0, ["127.0.0.1"], ssl_context=context)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(listener.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    server = ImapServer(
        settings, listener.bound_ports[0], loop, listener, thread, mailstore
    )
    yield server
    for sock in server.sockets:
        sock.close()
    asyncio.run_coroutine_threadsafe(listener.stop(1.0), loop).result(15)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
