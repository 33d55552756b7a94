"""IDLE push for mail that Roost itself delivers (RFC 2177).

The whole server runs in-process (``roost.server.Server``: smtpd, queue
manager, local delivery, imapd on loopback ports).  The IDLE directory
poll is set to an hour, so the only way the IDLE session can hear of the
new message is the notice local delivery sends through
``roost.mailstore.notify``; the test then waits for the event itself,
never for a time.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from roost.auth import UserDB
from roost.config import Settings, from_values
from roost.server import Server
from roost.services import imapd
from tests.services.imapd_fixtures import Raw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    settings: Settings
    smtp_port: int
    imap_port: int


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    # an hour: no poll can fire while the test runs
    monkeypatch.setattr(imapd, "IDLE_POLL_S", 3600.0)
    dead = free_port()  # nothing listens here: no traffic leaves loopback
    smtp_port, imap_port = free_port(), free_port()
    settings = from_values(
        {
            "data_directory": str(tmp_path / "data"),
            "myhostname": "mx.example.test",
            "mydestination": "$myhostname, example.test, localhost",
            "inet_interfaces": "loopback-only",
            "relayhost": f"[127.0.0.1]:{dead}",
            "dns_resolver": f"127.0.0.1:{dead}",
            "smtp_port": str(smtp_port),
            "imap_port": str(imap_port),
            **{
                name: "none"
                for name in (
                    "submission_port",
                    "smtps_port",
                    "imaps_port",
                    "pop3_port",
                    "pop3s_port",
                )
            },
        },
        base_dir=tmp_path,
    )
    built = Server.build(settings)
    UserDB(settings.users_file).add("alice", "alice-pass")
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(built.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield Running(settings, smtp_port, imap_port)
    finally:
        asyncio.run_coroutine_threadsafe(built.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def imap_login(port: int) -> Raw:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw = Raw(sock)
    assert raw.read_line().startswith(b"* OK")
    assert raw.command("l", "LOGIN alice alice-pass")[-1].startswith(b"l OK")
    return raw


def send_mail(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail(
            "sender@example.org",
            ["alice@example.test"],
            f"From: sender@example.org\r\nSubject: {subject}\r\n\r\nhi\r\n",
        )


def test_idle_hears_local_delivery_without_polling(server: Running) -> None:
    raw = imap_login(server.imap_port)
    with raw.sock:
        idle_then_fetch(raw, server.smtp_port)


def idle_then_fetch(raw: Raw, smtp_port: int) -> None:
    select = raw.command("s", "SELECT INBOX")
    assert b"* 0 EXISTS\r\n" in select
    raw.send(b"i IDLE\r\n")
    assert raw.read_line().startswith(b"+ ")

    send_mail(smtp_port, "first")
    assert raw.read_line() == b"* 1 EXISTS\r\n"
    assert raw.read_line() == b"* 1 RECENT\r\n"
    send_mail(smtp_port, "second")
    assert raw.read_line() == b"* 2 EXISTS\r\n"
    assert raw.read_line() == b"* 2 RECENT\r\n"

    raw.send(b"DONE\r\n")
    assert raw.read_line() == b"i OK IDLE terminated\r\n"
    fetch = raw.command("f", "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: first" in fetch[0]
    assert b"Subject: second" in fetch[1]
