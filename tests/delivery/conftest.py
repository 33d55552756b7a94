"""Fixtures for delivery tests: a real resolver (unbound), a real
remote MTA (postfix's smtp-sink) and settings pointing at them."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from roost.config import Settings, from_values
from tests.delivery.fakes import self_signed_server_context
from tests.support.dns_server import DnsServer, running_resolver
from tests.support.postfix import MASTER_CF

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    with running_resolver(tmp_path_factory.mktemp("unbound")) as server:
        yield server


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**values: str) -> Settings:
        params = {
            "myhostname": "roost.example.org",
            "mydestination": "roost.example.org",
            "data_directory": str(tmp_path / "data"),
            "smtp_connect_timeout": "5s",
        }
        params.update(values)
        return from_values(params, base_dir=tmp_path)

    return make


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


class SmtpSink:
    """A running smtp-sink; `messages()` reads what it captured."""

    def __init__(self, directory: Path, port: int, process: subprocess.Popen[bytes]):
        self.directory = directory
        self.port = port
        self.process = process

    def messages(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.directory.glob("msg.*"))]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def smtp_sink() -> Iterator[Callable[..., SmtpSink]]:
    """Starts smtp-sink with extra options on a free loopback port."""
    started: list[subprocess.Popen[bytes]] = []
    # smtp-sink drops to nobody, who cannot enter pytest's 0700 tmp_path
    base = Path(tempfile.mkdtemp(prefix="roost-sink-"))
    os.chmod(base, 0o755)

    def start(*options: str) -> SmtpSink:
        directory = base / f"sink{len(started)}"
        directory.mkdir()
        os.chmod(directory, 0o777)
        port = free_port()
        command = [SMTP_SINK, "-u", "nobody", "-d", f"{directory}/msg.%s."]
        command += [*options, f"127.0.0.1:{port}", "10"]
        with (directory / "stderr").open("wb") as stderr:
            process = subprocess.Popen(command, stderr=stderr)
        started.append(process)
        # smtp-sink says nothing when ready: a bounded poll (at most
        # 200 x 20 ms) until it accepts a connection
        for _ in range(200):
            if process.poll() is not None or _listening(port):
                break
            time.sleep(0.02)
        if process.poll() is not None:
            raise RuntimeError("smtp-sink did not start")
        return SmtpSink(directory, port, process)

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)
    shutil.rmtree(base)


POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pf.example.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
default_transport = error:this test postfix relays nothing
virtual_mailbox_domains = example.test
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
alias_maps =
alias_database =
"""


class PostfixMta:
    """A real postfix on loopback that files example.test mail into
    Maildirs: `maildir("bo")` is bo@example.test's."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port

    def maildir(self, user: str) -> Path:
        return self.directory / "mail" / user

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self, user: str) -> list[bytes]:
        """Waits (bounded: 10 s) for postfix's asynchronous delivery."""
        new = self.maildir(user) / "new"
        for _ in range(500):
            files = sorted(new.glob("*")) if new.exists() else []
            if files:
                return [p.read_bytes() for p in files]
            time.sleep(0.02)
        return []


def _postfix(directory: Path, *args: str) -> None:
    # postfix reports config errors only to syslog or a terminal; the
    # maillog_file catches the rest
    subprocess.run([POSTFIX, "-c", str(directory / "etc"), *args], check=True)


@pytest.fixture
def postfix_mta() -> Iterator[PostfixMta]:
    if not os.path.exists(POSTFIX):
        pytest.skip("postfix is not installed")
    owner = pwd.getpwnam("postfix")
    directory = Path(tempfile.mkdtemp(prefix="roost-postfix-"))
    os.chmod(directory, 0o755)
    for sub in ("etc", "spool", "data", "mail"):
        (directory / sub).mkdir()
    for sub in ("data", "mail"):
        os.chown(directory / sub, owner.pw_uid, owner.pw_gid)
    self_signed_server_context(directory / "etc")
    (directory / "etc" / "vmailbox").write_text("bo@example.test bo/\n")
    port = free_port()
    main_cf = _MAIN_CF.format(d=directory, uid=owner.pw_uid, gid=owner.pw_gid)
    (directory / "etc" / "main.cf").write_text(main_cf)
    (directory / "etc" / "master.cf").write_text(MASTER_CF.format(port=port))
    _postfix(directory, "start")
    try:
        for _ in range(250):
            if _listening(port):
                break
            time.sleep(0.02)
        yield PostfixMta(directory, port)
    finally:
        _postfix(directory, "stop")
        shutil.rmtree(directory, ignore_errors=True)
