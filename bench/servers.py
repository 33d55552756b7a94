"""The servers one benchmark run starts: Roost, a private postfix, a private
dovecot, and postfix's smtp-sink as the relay target.

Every server binds 127.0.0.1 only, on ports picked free at start, and keeps
all its state (config, queue, logs, mailboxes) under the run's temporary
directory, so the system's own postfix and dovecot (if any) are never
touched.  Each class has start() and stop(); stop() is safe to call twice
and after a failed start, and ends only the processes this run started
(by the pid it got or read from the instance's own pid file).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"
# postfix's local(8) writes alias-file deliveries with default_privs, and
# dovecot refuses root: both run mail as this unprivileged system user
MAIL_USER = "nobody"


class BenchError(RuntimeError):
    """A server would not start or a run could not be made."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_banner(port: int, prefix: bytes, timeout: float, log: Path | None) -> None:
    """Wait until 127.0.0.1:port answers with a greeting starting with prefix."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=2) as s:
                s.settimeout(5)
                greeting = s.recv(512)
                if greeting.startswith(prefix):
                    return
                last = repr(greeting[:80])
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchError(f"no {prefix!r} greeting on port {port}: {last}{tail(log)}")


def wait_port_free(port: int, timeout: float) -> None:
    """Wait until nothing accepts on 127.0.0.1:port any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                pass
        except OSError:
            return
        time.sleep(0.1)


def tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n  --- " + str(log) + " ---\n  " + "\n  ".join(text)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except OSError:
        return False


def wait_pid_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)


def empty_maildir(maildir: Path) -> None:
    """Remove every message (new/ and cur/) so each run starts empty."""
    for sub in ("new", "cur", "tmp"):
        d = maildir / sub
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for entry in it:
                if entry.is_file():
                    os.unlink(entry.path)


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (
        (out.stdout or out.stderr).strip().splitlines()[0]
        if (out.stdout or out.stderr)
        else "unknown"
    )


# ---------------------------------------------------------------- Roost


def _port(port: int | None) -> str:
    return "none" if port is None else str(port)


class Roost:
    """`roost serve` in a subprocess, everything under data_directory."""

    name = "roost"

    def __init__(
        self,
        root: Path,
        *,
        smtp: bool = False,
        mail: bool = False,
        relay_port: int | None = None,
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "roost.log"
        self.smtp_port = free_port() if smtp else None
        self.imap_port = free_port() if mail else None
        self.pop3_port = free_port() if mail else None
        self.relay_port = relay_port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def maildir(self, user: str) -> Path:
        return self.data / "mail" / user / "Maildir"

    def write_config(self, users: dict[str, str]) -> None:
        """users: name -> `{SCHEME}hash` password field (passwd-file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        lines = [
            f"data_directory = {self.data}",
            "myhostname = mx.example.test",
            "mydomain = example.test",
            "myorigin = example.test",
            "mydestination = example.test, localhost",
            "mynetworks = 127.0.0.0/8",
            f"inet_interfaces = {LOOPBACK}",
            f"smtp_port = {_port(self.smtp_port)}",
            "submission_port = none",
            "smtps_port = none",
            f"imap_port = {_port(self.imap_port)}",
            "imaps_port = none",
            f"pop3_port = {_port(self.pop3_port)}",
            "pop3s_port = none",
            # as postfix, which exempts $mynetworks from this limit
            "smtpd_client_connection_count_limit = 0",
            "smtp_tls_security_level = none",
            # any DNS question goes to a dead loopback port, never off the box
            f"dns_resolver = {LOOPBACK}:{free_port()}",
            "log_level = info",
        ]
        if self.relay_port is not None:
            lines.append(f"relayhost = [{LOOPBACK}]:{self.relay_port}")
        (self.root / "main.cf").write_text("\n".join(lines) + "\n")
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        users_file = self.data / "users"
        lines = [f"{name}:{password}::::::\n" for name, password in users.items()]
        users_file.write_text("".join(lines))
        users_file.chmod(0o600)
        for name in users:
            for sub in ("new", "cur", "tmp"):
                (self.maildir(name) / sub).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._log_file = open(self.log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "roost.cli.main", "-c", str(self.root), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        for port, greeting in (
            (self.smtp_port, b"220"),
            (self.imap_port, b"* OK"),
            (self.pop3_port, b"+OK"),
        ):
            if port is not None:
                if self.proc.poll() is not None:
                    raise BenchError("roost exited at start" + tail(self.log))
                wait_banner(port, greeting, 30, self.log)

    @property
    def pids(self) -> set[int]:
        return {self.proc.pid} if self.proc and self.proc.poll() is None else set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# ---------------------------------------------------------------- postfix

_MASTER_CF = """\
# service type private unpriv chroot wakeup maxproc command
{listen} inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A private postfix instance: own config, queue and data directories.

    Settings follow ../shared/bench/conf/postfix-main.cf (the reference
    run): no chroot, no DNS, no peer name lookups, Maildir delivery by
    local(8).  The bench user is an alias to a Maildir path (`bench:
    DIR/Maildir/`), delivered by local(8) with default_privs, so no unix
    account is needed.  Mail for other domains goes to relayhost when one
    is given and is refused otherwise.
    """

    name = "postfix"

    def __init__(self, root: Path, relay_port: int | None = None) -> None:
        self.root = root
        self.etc = root / "etc"
        self.queue = root / "queue"
        self.log = root / "maillog"
        self.mail = root / "mail" / "bench" / "Maildir"
        self.smtp_port = free_port()
        self.relay_port = relay_port
        self.started = False

    def maildir(self, user: str) -> Path:
        return self.mail

    def _postfix(self, *args: str, timeout: float = 60) -> int:
        """Run `postfix -c ETC args`; its output goes to postfix.log.

        The master daemon inherits stdout/stderr, so they go to a file,
        never to a pipe that would stay open."""
        with open(self.root / "postfix.log", "ab") as out:
            return subprocess.run(
                ["postfix", "-c", str(self.etc), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode

    def write_config(self) -> None:
        for d in (self.etc, self.queue, self.root / "data", self.mail.parent):
            d.mkdir(parents=True, exist_ok=True)
        for sub in ("new", "cur", "tmp"):
            (self.mail / sub).mkdir(parents=True, exist_ok=True)
        chown_tree(self.root / "mail", MAIL_USER)
        # master.lock lives there, written by the mail_owner
        chown_tree(self.root / "data", "postfix")
        (self.root / "data").chmod(0o700)
        if self.relay_port is not None:
            outbound = [
                f"relayhost = [{LOOPBACK}]:{self.relay_port}",
                "default_transport = smtp",
                "relay_transport = relay",
            ]
        else:
            outbound = [
                "relayhost =",
                "default_transport = error:outbound delivery disabled in benchmark",
                "relay_transport = error:outbound delivery disabled in benchmark",
            ]
        main_cf = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.root / 'data'}",
            f"maillog_file_prefixes = {self.root}",
            f"maillog_file = {self.log}",
            "syslog_name = postfix-roostbench",
            f"inet_interfaces = {LOOPBACK}",
            "inet_protocols = ipv4",
            "myhostname = mx.example.test",
            "mydomain = example.test",
            "myorigin = example.test",
            "mydestination = example.test, localhost",
            "mynetworks = 127.0.0.0/8",
            f"alias_maps = hash:{self.etc / 'aliases'}",
            f"alias_database = hash:{self.etc / 'aliases'}",
            "local_recipient_maps = $alias_maps",
            "recipient_delimiter = +",
            "mailbox_size_limit = 0",
            *outbound,
            "smtp_dns_support_level = disabled",
            "smtp_host_lookup = native",
            "lmtp_host_lookup = native",
            "smtp_tls_security_level = none",
            "smtpd_peername_lookup = no",
            "smtpd_banner = $myhostname ESMTP",
            "biff = no",
            "append_dot_mydomain = no",
            "readme_directory = no",
        ]
        (self.etc / "main.cf").write_text("\n".join(main_cf) + "\n")
        listen = f"{LOOPBACK}:{self.smtp_port}"
        (self.etc / "master.cf").write_text(_MASTER_CF.format(listen=listen))
        (self.etc / "aliases").write_text(f"bench: {self.mail}/\n")
        out = subprocess.run(
            ["postalias", "-c", str(self.etc), str(self.etc / "aliases")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode:
            raise BenchError("postalias failed: " + out.stderr)

    @property
    def master_pid(self) -> int | None:
        return read_pid(self.queue / "pid" / "master.pid")

    @property
    def pids(self) -> set[int]:
        pid = self.master_pid
        return {pid} if self.started and pid else set()

    def start(self) -> None:
        self.started = True
        if self._postfix("start"):
            raise BenchError(
                "postfix start failed"
                + tail(self.root / "postfix.log")
                + tail(self.log)
            )
        wait_banner(self.smtp_port, b"220", 30, self.log)

    def queue_size(self) -> int:
        n = 0
        for sub in ("incoming", "active", "deferred", "maildrop"):
            for _, _, files in os.walk(self.queue / sub):
                n += len(files)
        return n

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.master_pid
        self._postfix("stop", timeout=60)
        if pid and not wait_pid_gone(pid, 20):
            self._postfix("abort", timeout=30)
            if not wait_pid_gone(pid, 10):
                os.kill(pid, signal.SIGKILL)
        self.started = False


# ---------------------------------------------------------------- dovecot


class Dovecot:
    """A private dovecot instance, config adapted from
    ../shared/bench/conf/dovecot.conf: loopback, no TLS, plaintext auth,
    passwd-file users, Maildir under each user's home in the run's dir."""

    name = "dovecot"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "dovecot.conf"
        self.log = root / "dovecot.log"
        self.home = root / "home"
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.started = False

    def maildir(self, user: str) -> Path:
        return self.home / user / "Maildir"

    def write_config(self, users: dict[str, str]) -> None:
        """users: name -> `{SCHEME}hash` password field."""
        self.home.mkdir(parents=True, exist_ok=True)
        pw = pwd.getpwnam(MAIL_USER)
        uid, gid = pw.pw_uid, pw.pw_gid
        r = self.root
        conf = f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log}
info_log_path = {self.log}
instance_name = dovecot-roostbench
protocols = imap pop3
listen = {LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {min(uid, 1000)}
passdb {{
  driver = passwd-file
  args = username_format=%u {r}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {LOOPBACK}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
protocol pop3 {{
  mail_max_userip_connections = 200
  pop3_uidl_format = %08Xu%08Xv
}}
"""
        self.conf.write_text(conf)
        lines = [
            f"{name}:{password}:{uid}:{gid}::{self.home / name}::\n"
            for name, password in users.items()
        ]
        users_file = r / "users"
        users_file.write_text("".join(lines))
        users_file.chmod(0o640)
        with contextlib.suppress(KeyError):
            os.chown(users_file, 0, pwd.getpwnam("dovecot").pw_gid)

    @property
    def master_pid(self) -> int | None:
        return read_pid(self.root / "run" / "master.pid")

    @property
    def pids(self) -> set[int]:
        pid = self.master_pid
        return {pid} if self.started and pid else set()

    def start(self) -> None:
        chown_tree(self.home, MAIL_USER)
        self.started = True
        # the daemon inherits stdout/stderr: a file, not a pipe to wait on
        with open(self.root / "start.log", "ab") as out:
            rc = subprocess.run(
                ["dovecot", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
            ).returncode
        if rc:
            raise BenchError(
                "dovecot start failed" + tail(self.root / "start.log") + tail(self.log)
            )
        wait_banner(self.imap_port, b"* OK", 30, self.log)
        wait_banner(self.pop3_port, b"+OK", 30, self.log)

    def stop(self) -> None:
        if not self.started:
            return
        pid = self.master_pid
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_pid_gone(pid, 20):
                os.kill(pid, signal.SIGKILL)
                wait_pid_gone(pid, 5)
        wait_port_free(self.imap_port, 10)
        wait_port_free(self.pop3_port, 10)
        self.started = False


# ---------------------------------------------------------------- smtp-sink


class SmtpSink:
    """postfix's smtp-sink on 127.0.0.1: accepts and discards; its -c
    counters ("mesg=N") tell how many messages arrived."""

    name = "smtp-sink"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._count = 0
        self._updates: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        exe = shutil.which("smtp-sink")
        if exe is None:
            raise BenchError(
                "smtp-sink not found (Debian: it is in the postfix package)"
            )
        self.proc = subprocess.Popen(
            [exe, "-c", "-u", MAIL_USER, f"{LOOPBACK}:{self.port}", "256"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_banner(self.port, b"220", 15, None)

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        pattern = re.compile(rb"mesg=(\d+)")
        pending = b""
        while True:
            chunk = self.proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                return
            pending = (pending + chunk)[-256:]
            found = pattern.findall(pending)
            if found:
                now = time.monotonic()
                with self._cond:
                    self._count = max(self._count, int(found[-1]))
                    self._updates.append((now, self._count))
                    self._cond.notify_all()

    @property
    def count(self) -> int:
        with self._cond:
            return self._count

    def wait_count(self, target: int, deadline: float) -> float | None:
        """Monotonic time at which the counter reached target, or None."""
        with self._cond:
            while self._count < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))
            return next(t for t, n in self._updates if n >= target)

    @property
    def pids(self) -> set[int]:
        return {self.proc.pid} if self.proc and self.proc.poll() is None else set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
