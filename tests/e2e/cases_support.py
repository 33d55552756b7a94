"""A running `roost serve` and raw loopback clients for the case tests.

Self-contained on purpose: the case tests (tests/e2e/test_cases_*.py)
are the outside view of Roost, so they only use what a new user has —
the `roost` command line, a main.cf, and sockets. `CaseServer` writes a
main.cf into a temp dir, adds users with `roost user add`, starts
`roost -c DIR serve` as a subprocess, waits (bounded) until every port
accepts, and stops it with SIGTERM at teardown (it must exit 0).

Every listener is on 127.0.0.1; the relayhost and the DNS resolver are a
loopback port nothing listens on, so no test can reach another host.
`SmtpRaw`, `ImapRaw`, `Pop3Raw` speak the protocols over a raw socket so
that the tests control every byte (smtplib and friends fix up line ends).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_ports

HOST = "127.0.0.1"
DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
LISTENERS = (
    "smtp_port",
    "submission_port",
    "smtps_port",
    "imap_port",
    "imaps_port",
    "pop3_port",
    "pop3s_port",
)
USERS = {
    "alice": "alice-pass",
    "bob": "bob-pass",
    "al": "al-pass",
    "anna": "anna-pass",
    "carol": "carol-pass",
    "dave": "dave-pass",
}
START_TIMEOUT_S = 30.0
WAIT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 10.0


def poll(
    predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_TIMEOUT_S
) -> None:
    """Wait, bounded, until `predicate()` holds; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def program(name: str) -> str:
    script = Path(sys.executable).parent / name
    return str(script) if script.exists() else name


class CaseServer:
    """One `roost serve` with its own config and data directory."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="roost-cases-"))
        self.config_dir = self.root / "etc"
        self.data_dir = self.root / "data"
        ports = free_ports((*LISTENERS, "closed_port"))
        self.closed_port = ports.pop("closed_port")
        self.ports = ports
        self.extra = dict(extra or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "serve.log"

    # set-up

    def write_config(self) -> None:
        lines = {
            "data_directory": str(self.data_dir),
            "myhostname": HOSTNAME,
            "mydestination": f"$myhostname, {DOMAIN}, localhost",
            "inet_interfaces": "loopback-only",
            "relayhost": f"[{HOST}]:{self.closed_port}",
            "dns_resolver": f"{HOST}:{self.closed_port}",
        }
        lines.update({name: str(port) for name, port in self.ports.items()})
        lines.update(self.extra)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k} = {v}\n" for k, v in lines.items())
        (self.config_dir / "main.cf").write_text(text)

    def cli(
        self, name: str, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [program(name), "-c", str(self.config_dir), *args]
        env = dict(os.environ, ROOST_CONFIG=str(self.config_dir))
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, timeout=60
        )
        if check and result.returncode != 0:
            pytest.fail(f"{argv} exit {result.returncode}: {result.stderr}")
        return result

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [program("roost"), "-c", str(self.config_dir), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"roost serve exited: {self.log()}")
            return all(accepts(port) for port in self.ports.values())

        poll(listening, "roost serve to listen", START_TIMEOUT_S)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig`, wait (bounded) and return the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            return -9

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # what a test looks at

    def port(self, name: str) -> int:
        return self.ports[name if name.endswith("_port") else f"{name}_port"]

    def maildir(self, user: str) -> Path:
        return self.data_dir / "mail" / user / "Maildir"

    def messages(self, user: str, folder: str = "") -> list[Path]:
        """Files in new/ and cur/ of a user's INBOX (or `.folder`)."""
        base = self.maildir(user) / folder
        found: list[Path] = []
        for sub in ("new", "cur"):
            if (base / sub).is_dir():
                found += sorted((base / sub).iterdir())
        return found

    def queue_files(self) -> list[Path]:
        queue = self.data_dir / "queue"
        found: list[Path] = []
        for sub in ("incoming", "maildrop", "messages", "active", "deferred"):
            if (queue / sub).is_dir():
                found += [p for p in (queue / sub).rglob("*") if p.is_file()]
        return found

    def wait_queue_empty(self) -> None:
        poll(lambda: not self.queue_files(), "the queue to drain")

    def wait_messages(self, user: str, count: int) -> list[Path]:
        poll(lambda: len(self.messages(user)) >= count, f"{count} mail(s) for {user}")
        self.wait_queue_empty()
        return self.messages(user)

    def clear_mail(self, user: str) -> None:
        for path in self.messages(user):
            path.unlink()

    def smtp(self, port: str = "smtp") -> SmtpRaw:
        return SmtpRaw(self.port(port))

    def imap(self) -> ImapRaw:
        return ImapRaw(self.port("imap"))

    def pop3(self) -> Pop3Raw:
        return Pop3Raw(self.port("pop3"))

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def running_server(
    extra: dict[str, str] | None = None,
    aliases: str | None = None,
    users: dict[str, str] | None = None,
) -> Iterator[CaseServer]:
    """Generator for fixtures: start, yield, SIGTERM, assert exit 0."""
    server = CaseServer(extra)
    server.write_config()
    for name, password in (users or USERS).items():
        server.cli("roost", "user", "add", name, input=password + "\n")
    if aliases is not None:
        (server.data_dir / "aliases").write_text(aliases)
        server.cli("roost", "newaliases")
    server.start()
    try:
        yield server
    finally:
        status = server.stop()
        log = server.log()
        server.cleanup()
    assert status == 0, f"roost serve exit status {status}\n{log[-3000:]}"
    assert "Traceback" not in log, log[-5000:]


# raw clients ------------------------------------------------------------


class RawLine:
    """A socket with a byte buffer: lines, exact counts, silence checks."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (HOST, port), timeout=READ_TIMEOUT_S
        )
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_line(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._fill():
                line, self.buf = self.buf, b""
                return line
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_exact(self, count: int) -> bytes:
        while len(self.buf) < count:
            if not self._fill():
                break
        data, self.buf = self.buf[:count], self.buf[count:]
        return data

    def nothing_within(self, seconds: float) -> bool:
        """True when no byte arrives within `seconds` (a silence check)."""
        if self.buf:
            return False
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(READ_TIMEOUT_S)
        self.buf += chunk
        return False

    def is_closed(self) -> bool:
        try:
            return not self.buf and not self._fill()
        except OSError:
            return True

    def start_tls(self) -> None:
        assert not self.buf, f"bytes after the TLS go-ahead: {self.buf!r}"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=HOSTNAME)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __del__(self) -> None:
        # tests drop clients mid-session on purpose; no ResourceWarning
        self.close()


class SmtpRaw(RawLine):
    def __init__(self, port: int, greet: bool = True) -> None:
        super().__init__(port)
        if greet:
            self.greeting = self.reply()
            assert self.greeting[0].startswith(b"220"), self.greeting

    def reply(self) -> list[bytes]:
        """One (possibly multi-line) reply, as its raw lines."""
        lines = []
        while True:
            line = self.read_line()
            if not line:
                raise ConnectionError(f"closed mid-reply after {lines!r}")
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def code(self) -> int:
        return int(self.reply()[-1][:3])

    def cmd(self, line: str | bytes) -> int:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.code()

    def ehlo(self, name: str = "client.example.org") -> list[bytes]:
        self.send(f"EHLO {name}\r\n".encode())
        return self.reply()

    def transaction(self, mail_from: str, recipients: list[str], data: bytes) -> int:
        """MAIL, RCPTs (each must get 250), DATA; returns the final code."""
        assert self.cmd(f"MAIL FROM:<{mail_from}>") == 250
        for rcpt in recipients:
            assert self.cmd(f"RCPT TO:<{rcpt}>") == 250, rcpt
        assert self.cmd("DATA") == 354
        self.send(data)
        return self.code()


class ImapRaw(RawLine):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.greeting = self.read_line()
        assert self.greeting.startswith(b"* OK"), self.greeting

    def read_response_line(self) -> bytes:
        """One response line with its literals inlined."""
        line = self.read_line()
        out = line
        while True:
            match = re.search(rb"\{(\d+)\}\r\n$", line)
            if not match:
                return out
            out += self.read_exact(int(match.group(1)))
            line = self.read_line()
            out += line

    def read_response(self, tag: bytes) -> list[bytes]:
        lines = []
        while True:
            line = self.read_response_line()
            if not line:
                raise ConnectionError(f"closed before {tag!r}: {lines!r}")
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    def command(self, tag: str, text: str | bytes) -> list[bytes]:
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.read_response(tag.encode())

    def login(self, user: str, password: str) -> None:
        reply = self.command("L", f"LOGIN {user} {password}")
        assert reply[-1].startswith(b"L OK"), reply


class Pop3Raw(RawLine):
    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.greeting = self.read_line()
        assert self.greeting.startswith(b"+OK"), self.greeting

    def cmd(self, line: str | bytes) -> bytes:
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.read_line()

    def multi(self, line: str | bytes) -> tuple[bytes, bytes]:
        """Status line and the raw multi-line body up to and incl. CRLF.CRLF."""
        status = self.cmd(line)
        if not status.startswith(b"+OK"):
            return status, b""
        body = b""
        while True:
            chunk = self.read_line()
            if not chunk:
                raise ConnectionError(f"closed inside multi-line: {body[-200:]!r}")
            body += chunk
            if chunk == b".\r\n":
                return status, body

    def login(self, user: str, password: str) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")


def unstuff(body: bytes) -> bytes:
    """A strict RFC 1939 3 reader: drop the terminator, un-stuff dots."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n", body[-40:]
    lines = body[: -len(b".\r\n")].split(b"\r\n")
    out = [line[1:] if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(out)


def header_block(message: bytes) -> bytes:
    """The header section of a stored message (LF or CRLF line ends)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in message:
            return message.split(sep, 1)[0]
    return message


def imap_literal(lines: list[bytes], item: bytes) -> bytes:
    """The literal following `item` (e.g. b"BODY[]") in a FETCH response."""
    blob = b"".join(lines)
    start = blob.find(item + b" {")
    assert start >= 0, f"{item!r} not in {blob[:300]!r}"
    open_at = start + len(item) + 1
    close_at = blob.index(b"}\r\n", open_at)
    count = int(blob[open_at + 1 : close_at])
    body_at = close_at + 3
    return blob[body_at : body_at + count]


# a next hop on loopback ---------------------------------------------------


class CaptureSmtp:
    """A tiny SMTP server on loopback that records what Roost sends it.

    `extensions` are the EHLO keywords it offers; `refuse_rcpt` maps a
    lowercased address to the reply it gets at RCPT. Each finished
    transaction is appended to `transactions` as (mail line, rcpt lines,
    data bytes); `commands` keeps every command line received.
    """

    def __init__(
        self,
        extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SMTPUTF8"),
        refuse_rcpt: dict[str, str] | None = None,
    ) -> None:
        self.extensions = extensions
        self.refuse_rcpt = dict(refuse_rcpt or {})
        self.commands: list[bytes] = []
        self.transactions: list[tuple[bytes, list[bytes], bytes]] = []
        self.sessions = 0
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        self.sessions += 1
        conn.settimeout(30)
        reader = conn.makefile("rb")
        try:
            self._dialogue(conn, reader)
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def _dialogue(self, conn: socket.socket, reader: object) -> None:
        read = reader.readline  # type: ignore[attr-defined]
        conn.sendall(b"220 capture.example.org ESMTP\r\n")
        mail, rcpts = b"", []
        while line := read(4096):
            self.commands.append(line)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                ext = [b"capture.example.org", *(e.encode() for e in self.extensions)]
                text = b"".join(b"250-" + e + b"\r\n" for e in ext[:-1])
                conn.sendall(text + b"250 " + ext[-1] + b"\r\n")
            elif verb == b"MAIL":
                mail, rcpts = line, []
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                address = line.split(b"<", 1)[1].split(b">", 1)[0].lower()
                refusal = self.refuse_rcpt.get(address.decode("utf-8", "replace"))
                if refusal:
                    conn.sendall(refusal.encode() + b"\r\n")
                else:
                    rcpts.append(line)
                    conn.sendall(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                if not rcpts:
                    conn.sendall(b"554 5.5.1 No valid recipients\r\n")
                    continue
                conn.sendall(b"354 go ahead\r\n")
                data = b""
                while (chunk := read(1 << 20)) not in (b".\r\n", b""):
                    data += chunk
                self.transactions.append((mail, rcpts, data))
                conn.sendall(b"250 2.0.0 Ok: captured\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 Ok\r\n")

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=5)
        self.listener.close()
