"""Small scripted SMTP/LMTP servers on loopback, for odd replies.

`FakeSmtp(replies={"RCPT": [b"450 4.2.0 later"]})` answers each verb
from its script (first entry first) and with a plain 250 otherwise;
an entry of None closes the connection without a reply. Everything a
client sent is kept per session for the test to inspect.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_EHLO = ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES")


@dataclass
class SessionRecord:
    peer: str
    commands: list[bytes] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    is_tls: bool = False
    tls_at_mail: list[bool] = field(default_factory=list)


class FakeSmtp:
    def __init__(
        self,
        *,
        ehlo: tuple[str, ...] = DEFAULT_EHLO,
        greeting: bytes = b"220 fake.test ESMTP",
        replies: dict[str, list[bytes | None]] | None = None,
        lmtp: bool = False,
        tls: ssl.SSLContext | None = None,
        after_starttls: bytes = b"",
        before_dot_reply: Callable[[], Awaitable[None]] | None = None,
        hold_until_data: bool = False,
    ) -> None:
        self.ehlo = ehlo
        self.greeting = greeting
        self.replies = {k: list(v) for k, v in (replies or {}).items()}
        self.lmtp = lmtp
        self.tls = tls
        self.after_starttls = after_starttls
        self.before_dot_reply = before_dot_reply
        # answer MAIL and RCPT only once DATA came: a client that does
        # not pipeline (RFC 2920) then waits forever, and the test fails
        self.hold_until_data = hold_until_data
        self.sessions: list[SessionRecord] = []
        self.active = 0
        self.max_active = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    @property
    def messages(self) -> list[bytes]:
        return [m for s in self.sessions for m in s.messages]

    def _scripted(self, verb: str, default: bytes) -> bytes | None:
        script = self.replies.get(verb)
        if script:
            return script.pop(0)
        return default

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        record = SessionRecord(writer.get_extra_info("peername")[0])
        self.sessions.append(record)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self._converse(reader, writer, record)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _converse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: SessionRecord,
    ) -> None:
        greeting = self._scripted("CONNECT", self.greeting)
        if greeting is None:
            return
        writer.write(greeting + b"\r\n")
        accepted = 0
        held: list[bytes] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            record.chunks.append(line)
            command = line.rstrip(b"\r\n")
            record.commands.append(command)
            verb = command.split(b" ", 1)[0].split(b":", 1)[0].upper().decode()
            if verb in ("EHLO", "LHLO"):
                reply = self._scripted(verb, self._ehlo_reply())
            elif verb == "STARTTLS" and self.tls is not None:
                writer.write(b"220 2.0.0 Ready to start TLS\r\n" + self.after_starttls)
                await writer.drain()
                await writer.start_tls(self.tls)
                record.is_tls = True
                continue
            elif verb == "DATA":
                for early in held:
                    writer.write(early + b"\r\n")
                held = []
                reply = self._scripted("DATA", b"354 End data with <CR><LF>.<CR><LF>")
                if reply is not None and reply.startswith(b"354"):
                    writer.write(reply + b"\r\n")
                    await writer.drain()
                    record.messages.append(await _read_data(reader))
                    reply = await self._dot_reply(accepted)
                accepted = 0
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            else:
                if verb == "MAIL":
                    record.tls_at_mail.append(record.is_tls)
                    accepted = 0
                reply = self._scripted(verb, b"250 2.0.0 Ok")
                if verb == "RCPT" and reply is not None and reply.startswith(b"2"):
                    accepted += 1
                if self.hold_until_data and verb in ("MAIL", "RCPT") and reply:
                    held.append(reply)
                    continue
            if reply is None:
                return
            writer.write(reply + b"\r\n")
            await writer.drain()

    async def _dot_reply(self, accepted: int) -> bytes | None:
        if self.before_dot_reply is not None:
            await self.before_dot_reply()
        replies = []
        for _ in range(accepted if self.lmtp else 1):
            reply = self._scripted(".", b"250 2.0.0 Ok: queued as FAKE1")
            if reply is None:
                return None
            replies.append(reply)
        return b"\r\n".join(replies)

    def _ehlo_reply(self) -> bytes:
        lines = ["fake.test", *self.ehlo]
        out = [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]
        return "\r\n".join(out).encode()


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if line in (b".\r\n", b""):
            return b"".join(lines)
        lines.append(line[1:] if line.startswith(b".") else line)


def self_signed_server_context(directory: Path) -> ssl.SSLContext:
    """A server SSLContext with a fresh self-signed certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context
