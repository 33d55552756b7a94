"""roost.net: the byte pump every service runs on, driven over loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from roost.net import Connection, IdleTimeout, Listener, tls

Handler = Callable[[Connection], Awaitable[None]]


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    data = tmp_path_factory.mktemp("tls")
    cert, key = tls.certificate_paths(None, None, data, "mx.example.test")
    return tls.server_context(cert, key)


async def _start(handler: Handler, ctx: ssl.SSLContext, **kw: object) -> Listener:
    listener = Listener("test", handler, 0, ["127.0.0.1"], ssl_context=ctx, **kw)  # type: ignore[arg-type]
    await listener.start()
    return listener


async def _echo_with_starttls(conn: Connection) -> None:
    await conn.write(b"hello\r\n")
    while data := await conn.read():
        if data.startswith(b"STARTTLS\r\n"):
            await conn.start_tls(b"go\r\n")
            continue
        await conn.write(b"tls " if conn.is_tls else b"plain ")
        await conn.write(data)


def test_plaintext_pipelined_after_starttls_is_discarded(
    server_tls: ssl.SSLContext,
) -> None:
    """Case 003 (CVE-2011-0411): bytes sent in clear after STARTTLS in the
    same packet must never be read as commands inside TLS."""

    async def run() -> list[bytes]:
        listener = await _start(_echo_with_starttls, server_tls)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", listener.bound_ports[0]
        )
        seen = [await reader.readline()]
        writer.write(b"STARTTLS\r\nINJECTED\r\n")
        seen.append(await reader.readline())
        await writer.start_tls(tls.client_context(verify=False))
        writer.write(b"after\r\n")
        seen.append(await reader.readline())
        writer.close()
        await listener.stop(1)
        return seen

    assert asyncio.run(run()) == [b"hello\r\n", b"go\r\n", b"tls after\r\n"]


def test_implicit_tls_listener(server_tls: ssl.SSLContext) -> None:
    async def run() -> bytes:
        listener = await _start(_echo_with_starttls, server_tls, implicit_tls=True)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            listener.bound_ports[0],
            ssl=tls.client_context(verify=False),
        )
        await reader.readline()
        writer.write(b"x\r\n")
        line = await reader.readline()
        writer.close()
        await listener.stop(1)
        return line

    assert asyncio.run(run()) == b"tls x\r\n"


def test_idle_timeout_raises_in_the_session(server_tls: ssl.SSLContext) -> None:
    outcome: list[str] = []

    async def handler(conn: Connection) -> None:
        conn.set_timeout(0.05)
        try:
            await conn.read()
        except IdleTimeout:
            outcome.append("timeout")
            await conn.write(b"bye\r\n")

    async def run() -> bytes:
        listener = await _start(handler, server_tls)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", listener.bound_ports[0]
        )
        line = await reader.readline()
        writer.close()
        await listener.stop(1)
        return line

    assert asyncio.run(run()) == b"bye\r\n"
    assert outcome == ["timeout"]


def test_peer_that_never_reads_cannot_hold_a_session(
    server_tls: ssl.SSLContext,
) -> None:
    """A writer blocked on a full socket buffer gives up after the timeout."""
    outcome: list[str] = []
    done = asyncio.Event()

    async def handler(conn: Connection) -> None:
        conn.set_timeout(0.2)
        try:
            for _ in range(10_000):
                await conn.write(b"x" * 65536)
            outcome.append("wrote everything")
        except IdleTimeout:
            outcome.append("timeout")
        finally:
            done.set()

    async def run() -> None:
        listener = await _start(handler, server_tls)
        sock = socket.create_connection(("127.0.0.1", listener.bound_ports[0]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await asyncio.wait_for(done.wait(), 30)
        sock.close()
        await listener.stop(1)

    asyncio.run(run())
    assert outcome == ["timeout"]


def test_connections_per_client_are_limited(server_tls: ssl.SSLContext) -> None:
    release = asyncio.Event()

    async def handler(conn: Connection) -> None:
        await conn.write(b"welcome\r\n")
        await release.wait()

    async def run() -> list[bytes]:
        listener = await _start(
            handler, server_tls, max_per_client=2, too_many_reply=b"421 busy\r\n"
        )
        port = listener.bound_ports[0]
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        lines = [await reader.readline() for reader, _ in streams]
        release.set()
        for _, writer in streams:
            writer.close()
        await listener.stop(1)
        return lines

    assert sorted(asyncio.run(run())) == [
        b"421 busy\r\n",
        b"welcome\r\n",
        b"welcome\r\n",
    ]


def test_stop_cancels_sessions_after_the_grace_period(
    server_tls: ssl.SSLContext,
) -> None:
    cancelled: list[bool] = []

    async def handler(conn: Connection) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def run() -> None:
        listener = await _start(handler, server_tls)
        _, writer = await asyncio.open_connection("127.0.0.1", listener.bound_ports[0])
        await asyncio.sleep(0.05)
        await listener.stop(grace_s=0.1)
        writer.close()

    asyncio.run(run())
    assert cancelled == [True]


def test_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    first = tls.certificate_paths(None, None, tmp_path, "mx.example.test")
    content = first[0].read_bytes()
    second = tls.certificate_paths(None, None, tmp_path, "mx.example.test")
    assert first == second
    assert second[0].read_bytes() == content
    assert oct(first[1].stat().st_mode & 0o777) == "0o600"
