"""Listening sockets: accept, count per client, run one session per connection.

A listener knows nothing of mail.  It is given a session coroutine factory
and the bytes to send when a client already holds too many connections;
each accepted connection gets a ``Connection`` and its own task.  Shutting
down stops accepting, lets running sessions finish for a grace period, then
cancels them: a session cancelled before it replied to a command has
promised nothing, so nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from roost.net.connection import Connection

Handler = Callable[[Connection], Awaitable[None]]

log = logging.getLogger("roost.net")


@dataclass
class Listener:
    """One service on one or more addresses and one port."""

    name: str
    handler: Handler
    port: int
    addresses: list[str]
    ssl_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    max_per_client: int = 50
    too_many_reply: bytes = b""
    _servers: list[asyncio.Server] = field(default_factory=list)
    _sessions: set[asyncio.Task[None]] = field(default_factory=set)
    _per_client: Counter[str] = field(default_factory=Counter)

    async def start(self) -> None:
        """Bind every address; raises OSError when one cannot be bound."""
        loop = asyncio.get_running_loop()
        for address in self.addresses:
            server = await loop.create_server(
                self._make_connection,
                host=address,
                port=self.port,
                ssl=self.ssl_context if self.implicit_tls else None,
                reuse_address=True,
                backlog=512,
                ssl_handshake_timeout=30 if self.implicit_tls else None,
            )
            self._servers.append(server)
            for sock in server.sockets:
                log.info("%s: listening on %s", self.name, _fmt(sock.getsockname()))

    @property
    def bound_ports(self) -> list[int]:
        return [s.getsockname()[1] for srv in self._servers for s in srv.sockets]

    def _make_connection(self) -> Connection:
        conn = _ManagedConnection(self.ssl_context, self)
        return conn

    def _session_started(self, conn: Connection) -> None:
        self._per_client[conn.peer_ip] += 1
        task = asyncio.ensure_future(self._run(conn))
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)

    async def _run(self, conn: Connection) -> None:
        try:
            if self._per_client[conn.peer_ip] > self.max_per_client > 0:
                log.warning("%s: too many connections from %s", self.name, conn.peer_ip)
                if self.too_many_reply:
                    await conn.write(self.too_many_reply)
                return
            await self.handler(conn)
        except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
            log.info(
                "%s: %s[%s]: connection lost: %s",
                self.name,
                conn.conn_id,
                conn.peer_ip,
                exc.__class__.__name__,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: %s: session failed", self.name, conn.conn_id)
        finally:
            self._per_client[conn.peer_ip] -= 1
            if self._per_client[conn.peer_ip] <= 0:
                del self._per_client[conn.peer_ip]
            await _close_quietly(conn)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting; give sessions ``grace_s`` to end, then cancel."""
        for server in self._servers:
            server.close()
        if self._sessions:
            _, pending = await asyncio.wait(set(self._sessions), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for server in self._servers:
            await server.wait_closed()


class _ManagedConnection(Connection):
    def __init__(self, ssl_context: ssl.SSLContext | None, owner: Listener) -> None:
        super().__init__(ssl_context)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._owner._session_started(self)


async def _close_quietly(conn: Connection) -> None:
    # The peer may be gone already; there is nothing left to tell it.
    with contextlib.suppress(Exception):
        await conn.close()


def _fmt(sockname: tuple[object, ...]) -> str:
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
