"""Shared fixtures: a real `roost serve` subprocess on free loopback ports.

`roost_server` (module scope) and `fresh_roost_server` (function scope,
for tests that kill, stop or empty the server) write a main.cf into a
temporary directory, add alice and bob with the `roost user add`
command, start `roost -c DIR serve` and wait until all seven listeners
accept connections. The yielded `RoostServer` knows its ports and
directories, polls Maildirs (`wait_delivered`), runs the admin commands
against the same config (`cli`) and can be killed and restarted. On
teardown it is stopped with SIGTERM and must exit 0.

`need_binary(name)` gives the path of an external client (swaks, curl,
fetchmail, mbsync, postfix...). Outside CI a missing one skips the test;
with CI=true it fails, so a CI machine without the tool cannot pass by
skipping.

Every listener and every outbound hop points at 127.0.0.1: relayhost is
a loopback port nothing listens on, and dns_resolver a loopback port too,
so no test can send mail or DNS queries anywhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LISTENERS = (
    "smtp_port",
    "submission_port",
    "smtps_port",
    "imap_port",
    "imaps_port",
    "pop3_port",
    "pop3s_port",
)
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
DOMAIN = "example.test"
HOSTNAME = "mx.example.test"

# Bounds for polling the subprocess; generous for a loaded 2-core CI box.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
DELIVERY_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.05


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_binary(name: str) -> str:
    """Path of an external program; skip without it, fail in CI."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{name} is not installed"
        if in_ci():
            pytest.fail(f"{message} (CI=true: scripts/install-test-deps.sh)")
        pytest.skip(message)
    return path


def roost_command(*args: str) -> list[str]:
    """argv for the installed `roost` console script (this interpreter's)."""
    script = Path(sys.executable).parent / "roost"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "roost.cli.main", *args]


def free_port() -> int:
    """A TCP port free on both 127.0.0.1 and ::1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as six:
                six.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port found")


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def poll(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Call predicate until it is true; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class RoostServer:
    """A `roost serve` subprocess and everything a test needs to talk to it."""

    root: Path
    ports: dict[str, int]
    extra_config: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    # paths

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def log_path(self) -> Path:
        return self.root / "roost.log"

    @property
    def cert_file(self) -> Path:
        """The self-signed certificate the server made on first start."""
        return self.data_dir / "tls" / "roost-selfsigned.crt"

    def maildir(self, user: str) -> Path:
        return self.data_dir / "mail" / user / "Maildir"

    def port(self, name: str) -> int:
        return self.ports[name if name.endswith("_port") else f"{name}_port"]

    # set-up

    def write_config(self) -> None:
        lines = {
            "data_directory": str(self.data_dir),
            "myhostname": HOSTNAME,
            "mydomain": DOMAIN,
            "mydestination": f"{DOMAIN}, $myhostname, localhost",
            "inet_interfaces": "loopback-only",
            # nothing may leave this machine: a closed loopback port
            "relayhost": f"[127.0.0.1]:{self.ports['closed_port']}",
            "dns_resolver": f"127.0.0.1:{self.ports['closed_port']}",
            "smtp_connect_timeout": "2s",
            "minimal_backoff_time": "300s",
            "log_level": "info",
        }
        lines.update({name: str(self.ports[name]) for name in LISTENERS})
        lines.update(self.extra_config)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{name} = {value}\n" for name, value in lines.items())
        (self.config_dir / "main.cf").write_text(text)

    def add_users(self) -> None:
        for name, password in self.users.items():
            self.cli("roost", "user", "add", name, input=password + "\n")

    def cli(
        self,
        program: str,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run roost/sendmail/mailq/postqueue/postsuper/postcat on our config."""
        script = Path(sys.executable).parent / program
        argv = [str(script) if script.exists() else program]
        argv += ["-c", str(self.config_dir), *args]
        env = dict(os.environ, ROOST_CONFIG=str(self.config_dir))
        if isinstance(input, bytes):
            input = input.decode("utf-8", "surrogateescape")
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    # running

    def start(self) -> None:
        """Start `roost serve`; return once every listener accepts."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"---- start {self.starts} ----\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            roost_command("-c", str(self.config_dir), "serve"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def all_listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(
                    f"roost serve exited {self.proc.returncode} at start:\n"
                    + self.log_text()[-4000:]
                )
            return all(accepts(self.ports[name]) for name in LISTENERS)

        poll(all_listening, START_TIMEOUT_S, "all seven listeners")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send sig and wait for the exit; returns the exit code."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            pytest.fail(f"roost serve did not exit within {STOP_TIMEOUT_S}s")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Signal the server (default SIGKILL) and reap it; exit code."""
        return self.stop(sig)

    def restart(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            code = self.stop()
            assert code == 0, self.log_text()[-4000:]
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # mailboxes

    def messages(self, user: str, folder: str = "") -> list[Path]:
        """Files in new/ and cur/ of user's Maildir (or a Maildir++ folder)."""
        base = self.maildir(user) / (f".{folder}" if folder else "")
        found: list[Path] = []
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                found.extend(p for p in (base / sub).iterdir() if p.is_file())
        return sorted(found)

    def wait_delivered(
        self, user: str, n: int, timeout_s: float = DELIVERY_TIMEOUT_S
    ) -> list[Path]:
        """Wait until user's INBOX holds at least n messages; returns them."""
        poll(
            lambda: len(self.messages(user)) >= n,
            timeout_s,
            f"{n} message(s) for {user} (have {len(self.messages(user))})",
        )
        return self.messages(user)

    def wait_for_text(
        self, user: str, token: bytes, timeout_s: float = DELIVERY_TIMEOUT_S
    ) -> bytes:
        """Wait for the one message in user's INBOX containing token."""
        found: list[bytes] = []

        def has_it() -> bool:
            found[:] = [
                data
                for data in (_read(p) for p in self.messages(user))
                if data is not None and token in data
            ]
            return bool(found)

        poll(has_it, timeout_s, f"a message with {token!r} for {user}")
        assert len(found) == 1, f"{len(found)} messages contain {token!r}"
        return found[0]

    def queue_is_empty(self) -> bool:
        result = self.cli("postqueue", "-p", check=False)
        return "Mail queue is empty" in result.stdout

    def wait_queue_empty(self, timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        poll(self.queue_is_empty, timeout_s, "the queue to drain")


def _read(path: Path) -> bytes | None:
    # a file may move from new/ to cur/ between listing and reading
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def free_ports(names: Iterable[str]) -> dict[str, int]:
    """One distinct free port per name.

    free_port may hand out a port again once it is closed, so each new one
    is checked against those already taken.
    """
    ports: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


def _make_server(root: Path, extra_config: dict[str, str] | None) -> RoostServer:
    ports = free_ports((*LISTENERS, "closed_port"))
    server = RoostServer(root=root, ports=ports, extra_config=extra_config or {})
    server.write_config()
    server.add_users()
    return server


@contextlib.contextmanager
def running_server(
    root: Path, extra_config: dict[str, str] | None = None
) -> Iterator[RoostServer]:
    """A started server; on exit SIGTERM it and require exit code 0."""
    server = _make_server(root, extra_config)
    server.start()
    try:
        yield server
    finally:
        if server.running:
            code = server.stop()
            log = server.log_text()
            assert code == 0, f"roost serve exited {code}:\n{log[-4000:]}"
            assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def roost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoostServer]:
    """One server shared by a test module (tests must not stop it)."""
    with running_server(tmp_path_factory.mktemp("roost")) as server:
        yield server


@pytest.fixture
def fresh_roost_server(tmp_path: Path) -> Iterator[RoostServer]:
    """A server of this test's own, free to kill, stop and empty."""
    with running_server(tmp_path / "roost") as server:
        yield server


@pytest.fixture
def roost_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., RoostServer]]:
    """Start servers with extra main.cf parameters: factory(name=value...)."""
    with contextlib.ExitStack() as stack:
        made: list[RoostServer] = []

        def make(**extra_config: str) -> RoostServer:
            root = tmp_path / f"roost{len(made)}"
            made.append(stack.enter_context(running_server(root, extra_config)))
            return made[-1]

        yield make
