"""Fixtures for delivery tests: a real resolver (unbound), a real
remote MTA (postfix's smtp-sink) and settings pointing at them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from roost.config import Settings, from_values
from tests.support.dns_server import DnsServer, running_resolver

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
