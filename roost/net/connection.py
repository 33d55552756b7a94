"""One client connection: bytes in, bytes out, TLS upgrade, idle timeout.

A ``Connection`` is an asyncio ``Protocol`` that buffers what arrives and
hands it to one session coroutine through ``read()``.  Reading is paused when
the buffer passes a bound, so a client that sends faster than the session
consumes cannot make us hold unbounded memory; writing waits for the
transport to drain, so a client that never reads blocks only its own session.

``start_tls()`` throws away anything still buffered before the handshake:
bytes that arrived in plaintext after a STARTTLS/STLS command must never be
taken as commands of the protected session (CVE-2011-0411, case 003).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import ssl

_BUFFER_HIGH_BYTES = 256 * 1024
_ids = itertools.count(1)
_ID_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ23456789"


class IdleTimeout(Exception):  # noqa: N818 - the name the brief gave
    """The peer sent nothing for longer than the session's timeout."""


def _short_id(number: int) -> str:
    chars = []
    while True:
        number, digit = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[digit])
        if not number:
            break
    return "".join(reversed(chars)).rjust(4, _ID_ALPHABET[0])


def is_loopback(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


class Connection(asyncio.Protocol):
    """A connection as a session sees it.  Made by the listener."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._data_ready = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reading_paused = False
        self._closed = asyncio.Event()
        self.timeout_s: float | None = None
        self.conn_id = _short_id(next(_ids))
        self.peer_ip = ""
        self.peer_port = 0
        self.local_ip = ""
        self.local_port = 0
        self.is_tls = False
        self.is_loopback = False

    # asyncio.Protocol side ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.peer_ip, self.peer_port = str(peer[0]), int(peer[1])
        self.local_ip, self.local_port = str(local[0]), int(local[1])
        if self.peer_ip.startswith("::ffff:"):
            self.peer_ip = self.peer_ip[len("::ffff:") :]
        self.is_loopback = is_loopback(self.peer_ip)
        self.is_tls = transport.get_extra_info("sslcontext") is not None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data_ready.set()
        if len(self._buffer) > _BUFFER_HIGH_BYTES and self._transport:
            self._transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool | None:
        self._eof = True
        self._data_ready.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._data_ready.set()
        self._can_write.set()
        self._closed.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # session side -------------------------------------------------------

    def set_timeout(self, seconds: float | None) -> None:
        """Set the idle timeout applied to each ``read()``."""
        self.timeout_s = seconds

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Return what has arrived, up to ``max_bytes``; b"" at end of input.

        Raises ``IdleTimeout`` when nothing arrives within the timeout.
        """
        while not self._buffer and not self._eof:
            self._data_ready.clear()
            # asyncio.timeout, not wait_for: no task per read (hot in POP3)
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._data_ready.wait()
            except TimeoutError:
                raise IdleTimeout from None
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if self._reading_paused and len(self._buffer) < _BUFFER_HIGH_BYTES // 2:
            self._reading_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data``; wait while the peer is not reading.

        Raises ``IdleTimeout`` (after aborting the connection) when the peer
        reads nothing for the idle timeout, ``ConnectionResetError`` when the
        connection is gone.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        transport.write(data)
        if not self._can_write.is_set():
            # A peer that stops reading must not hold its session (and any
            # mailbox lock) forever: the idle timeout bounds the wait too.
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._can_write.wait()
            except TimeoutError:
                transport.abort()
                raise IdleTimeout from None
        if transport.is_closing():
            raise ConnectionResetError("connection closed")

    async def start_tls(self, reply: bytes = b"") -> None:
        """Send ``reply`` (the go-ahead to STARTTLS/STLS), then upgrade to TLS.

        Bytes buffered before the reply was sent are discarded: a client may
        send nothing between its STARTTLS and our answer, so they can only be
        injected plaintext (case 003).  The reply, the discard and the start
        of the handshake happen with no await between them, so a ClientHello
        that answers the reply quickly is never mistaken for such bytes.
        Raises ``ConnectionError`` or ``ssl.SSLError`` when the handshake
        fails; the session should then end.
        """
        if self._ssl_context is None or self._transport is None:
            raise ConnectionError("TLS is not available")
        self._buffer.clear()
        if reply:
            self._transport.write(reply)
        loop = asyncio.get_running_loop()
        transport = await asyncio.wait_for(
            loop.start_tls(self._transport, self, self._ssl_context, server_side=True),
            timeout=self.timeout_s or 60,
        )
        if transport is None:
            raise ConnectionError("TLS handshake failed")
        # Not cleared again here: what arrived since came through TLS.
        self._transport = transport
        self.is_tls = True

    @property
    def tls_available(self) -> bool:
        return self._ssl_context is not None

    def tls_version(self) -> str | None:
        if self._transport is None:
            return None
        obj = self._transport.get_extra_info("ssl_object")
        return obj.version() if obj is not None else None

    def tls_cipher(self) -> str | None:
        if self._transport is None:
            return None
        cipher = self._transport.get_extra_info("cipher")
        return str(cipher[0]) if cipher else None

    async def close(self) -> None:
        """Close the connection after what was written is sent."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        try:
            await asyncio.wait_for(self._closed.wait(), 5)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
