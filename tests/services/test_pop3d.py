"""The POP3 service on a loopback port, driven by poplib and raw sockets.

Cases 003 (STLS), 015 (AUTH PLAIN), 026/028 (sizes, byte-stuffing) and
029 (DELE/RSET/QUIT, dropped connections, UIDL, IN-USE) run here against
a real listener; a few paths that need a non-loopback peer or an idle
timeout use an in-memory connection instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import poplib
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.auth import AuthThrottle, UserDB
from roost.config import Settings, from_values
from roost.mailstore import maildir as md
from roost.mailstore.pop3drop import Maildrop
from roost.net import IdleTimeout, Listener
from roost.net.tls import make_self_signed, server_context
from roost.services.pop3d import Pop3Service, plaintext_auth_allowed

# ---------------------------------------------------------------------------
# a running server


@dataclass
class Running:
    """A Pop3Service listening on 127.0.0.1 (plain and implicit TLS)."""

    settings: Settings
    userdb: UserDB
    port: int = 0
    tls_port: int = 0
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    listeners: list[Listener] = field(default_factory=list)
    finished: threading.Semaphore = field(
        default_factory=lambda: threading.Semaphore(0)
    )

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def maildir(self, user: str = "alice") -> Path:
        return md.mailbox_path(self.settings.mailbox_directory, user)

    def deliver(self, data: bytes, user: str = "alice") -> Path:
        md.ensure(self.maildir(user))
        return md.deliver(self.maildir(user), data)

    def files(self, user: str = "alice") -> set[str]:
        maildir = self.maildir(user)
        return {
            md.parse_name(name)[0]
            for sub in ("new", "cur")
            for name in os.listdir(maildir / sub)
        }

    def wait_sessions(self, count: int = 1) -> None:
        """Block until `count` more sessions have ended on the server."""
        for _ in range(count):
            assert self.finished.acquire(timeout=30), "session did not end"

    def client(self, user: str = "alice", password: str | None = None) -> poplib.POP3:
        pop = poplib.POP3("127.0.0.1", self.port, timeout=30)
        pop.user(user)
        pop.pass_(password if password is not None else f"{user}-pass")
        return pop


def _start(
    running: Running,
    ssl_context: ssl.SSLContext,
    throttle: AuthThrottle,
    lock_session: bool,
) -> None:
    service = Pop3Service(
        running.settings, running.userdb, throttle=throttle, lock_session=lock_session
    )
    tls_service = Pop3Service(
        running.settings, running.userdb, implicit_tls=True, throttle=throttle
    )

    def counted(svc: Pop3Service) -> Any:
        async def handle(conn: Any) -> None:
            try:
                await svc.handle(conn)
            finally:
                running.finished.release()

        return handle

    async def start() -> None:
        plain = Listener("pop3", counted(service), 0, ["127.0.0.1"], ssl_context)
        implicit = Listener(
            "pop3s",
            counted(tls_service),
            0,
            ["127.0.0.1"],
            ssl_context,
            implicit_tls=True,
        )
        for listener in (plain, implicit):
            await listener.start()
        running.listeners[:] = [plain, implicit]
        running.port = plain.bound_ports[0]
        running.tls_port = implicit.bound_ports[0]

    running.call(start())


def _stop(running: Running) -> None:
    async def stop() -> None:
        for listener in running.listeners:
            await listener.stop(grace_s=5)

    running.call(stop())


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    make_self_signed(cert, key, "localhost")
    return cert, key


@pytest.fixture(scope="session")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users"
    userdb = UserDB(path)
    for name in ("alice", "bob"):
        userdb.add(name, f"{name}-pass", "SHA512-CRYPT")
    return path


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    users_file: Path,
    tls_files: tuple[Path, Path],
    *,
    lock_session: bool = True,
    **params: str,
) -> Iterator[Running]:
    settings = from_values(
        {
            "data_directory": str(tmp_path / "data"),
            "mailbox_directory": str(tmp_path / "mail"),
            "users_file": str(users_file),
            **params,
        },
    )
    running = Running(settings, UserDB(users_file))
    thread = threading.Thread(target=running.loop.run_forever, daemon=True)
    thread.start()
    throttle = AuthThrottle(free_failures=1000)
    try:
        _start(running, server_context(*tls_files), throttle, lock_session)
        yield running
    finally:
        if running.listeners:
            _stop(running)
        running.loop.call_soon_threadsafe(running.loop.stop)
        thread.join(timeout=30)
        running.loop.close()


@pytest.fixture
def server(
    tmp_path: Path,
    users_file: Path,
    tls_files: tuple[Path, Path],
) -> Iterator[Running]:
    with serving(tmp_path, users_file, tls_files) as running:
        yield running


class Raw:
    """A line-level client on a plain socket, for bytes poplib hides."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def line(self) -> bytes:
        return self.file.readline()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, command: bytes) -> bytes:
        self.send(command + b"\r\n")
        return self.line()

    def multiline(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".\r\n":
            assert line, "connection closed inside a multi-line reply"
            lines.append(line)
        return lines

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw(server: Running) -> Iterator[Raw]:
    client = Raw(server.port)
    assert client.line().startswith(b"+OK")
    yield client
    client.close()


def plain_b64(authzid: str, authcid: str, password: str) -> str:
    raw = f"{authzid}\0{authcid}\0{password}".encode()
    return base64.b64encode(raw).decode()


def crlf(data: bytes) -> bytes:
    text = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if text and not text.endswith(b"\n"):
        text += b"\r\n"
    return text


# ---------------------------------------------------------------------------
# every command with poplib


def test_greeting_and_capa(server: Running) -> None:
    pop = poplib.POP3("127.0.0.1", server.port, timeout=30)
    assert pop.getwelcome().startswith(b"+OK")
    caps = pop.capa()
    for name in ("USER", "SASL", "STLS", "TOP", "UIDL", "RESP-CODES"):
        assert name in caps
    assert caps["SASL"] == ["PLAIN"]
    pop.quit()


def test_every_transaction_command(server: Running) -> None:
    first = server.deliver(b"Subject: one\n\nbody one\n")
    second = server.deliver(b"Subject: two\nX: y\n\nl1\nl2\nl3\n")
    pop = server.client()

    size1 = len(crlf(first.read_bytes()))
    size2 = len(crlf(second.read_bytes()))
    assert pop.stat() == (2, size1 + size2)
    resp, listing, _ = pop.list()
    assert resp.startswith(b"+OK 2 messages")
    assert listing == [b"1 %d" % size1, b"2 %d" % size2]
    assert pop.list(2) == b"+OK 2 %d" % size2
    assert pop.uidl()[1] == [b"1 " + first.name.encode(), b"2 " + second.name.encode()]
    assert pop.uidl(2) == b"+OK 2 " + second.name.encode()

    resp, lines, octets = pop.retr(1)
    assert resp == b"+OK %d octets" % octets
    assert b"\r\n".join(lines) + b"\r\n" == crlf(first.read_bytes())

    resp, lines, _ = pop.top(2, 1)
    assert lines == [b"Subject: two", b"X: y", b"", b"l1"]

    assert pop.noop() == b"+OK"
    assert pop.dele(1).startswith(b"+OK")
    assert pop.stat()[0] == 1
    assert pop.rset().startswith(b"+OK")
    assert pop.stat()[0] == 2
    assert pop.dele(2).startswith(b"+OK")
    assert pop.quit().startswith(b"+OK")
    server.wait_sessions()

    # RFC 1939 §6: 2 removed at QUIT; 1 was retrieved: moved to cur/, seen.
    assert server.files() == {first.name}
    assert os.listdir(server.maildir() / "cur") == [first.name + ":2,S"]


def test_errors_for_missing_and_deleted_messages(server: Running) -> None:
    server.deliver(b"Subject: x\n\nx\n")
    pop = server.client()
    for call in (lambda: pop.retr(2), lambda: pop.list(9), lambda: pop.dele(0)):
        with pytest.raises(poplib.error_proto):
            call()
    pop.dele(1)
    # Case 029: a deleted message is refused, never another one served.
    for call in (lambda: pop.retr(1), lambda: pop.dele(1), lambda: pop.top(1, 0)):
        with pytest.raises(poplib.error_proto, match="deleted"):
            call()
    assert pop.list()[1] == []
    assert pop.uidl()[1] == []
    pop.quit()


def test_wrong_password_and_unknown_user_look_the_same(server: Running) -> None:
    replies = []
    for user, password in (("alice", "nope"), ("nobody", "nope")):
        pop = poplib.POP3("127.0.0.1", server.port, timeout=30)
        assert pop.user(user) == b"+OK"
        with pytest.raises(poplib.error_proto) as info:
            pop.pass_(password)
        replies.append(info.value.args[0])
        # Still in AUTHORIZATION: a good login works afterwards.
        pop.user("alice")
        assert pop.pass_("alice-pass").startswith(b"+OK")
        pop.quit()
        server.wait_sessions()
    assert replies == [b"-ERR [AUTH] Authentication failed"] * 2


def test_third_failure_closes_the_connection(raw: Raw) -> None:
    for _ in range(2):
        raw.ask(b"USER alice")
        assert raw.ask(b"PASS bad").startswith(b"-ERR [AUTH]")
    raw.ask(b"USER alice")
    assert raw.ask(b"PASS bad").startswith(b"-ERR [AUTH]")
    assert raw.line() == b""


# ---------------------------------------------------------------------------
# AUTH PLAIN (RFC 5034, case 015)


@pytest.mark.parametrize(
    ("authzid", "authcid", "password", "ok"),
    [
        ("", "alice", "alice-pass", True),
        ("alice", "alice", "alice-pass", True),
        ("bob", "", "alice-pass", False),
        ("bob", "alice", "alice-pass", False),
        ("", "alice", "wrong", False),
    ],
)
def test_auth_plain_initial_response(
    raw: Raw,
    authzid: str,
    authcid: str,
    password: str,
    ok: bool,
) -> None:
    reply = raw.ask(b"AUTH PLAIN " + plain_b64(authzid, authcid, password).encode())
    if ok:
        assert reply == b"+OK Logged in\r\n"
        assert raw.ask(b"STAT") == b"+OK 0 0\r\n"
    else:
        assert reply == b"-ERR [AUTH] Authentication failed\r\n"
        # Never logged in as anybody: STAT is refused.
        assert raw.ask(b"STAT").startswith(b"-ERR")


def test_auth_plain_continuation_abort_and_garbage(raw: Raw) -> None:
    assert raw.ask(b"AUTH PLAIN") == b"+ \r\n"
    assert raw.ask(b"*") == b"-ERR Authentication aborted by client\r\n"
    assert raw.ask(b"AUTH PLAIN !!!not-base64!!!") == b"-ERR Cannot decode response\r\n"
    assert raw.ask(b"AUTH PLAIN") == b"+ \r\n"
    # Only one NUL: malformed, answered like a failed login.
    only_one = base64.b64encode(b"alice\0alice-pass")
    assert raw.ask(only_one).startswith(b"-ERR [AUTH]")
    assert raw.ask(b"AUTH PLAIN") == b"+ \r\n"
    assert (
        raw.ask(plain_b64("", "alice", "alice-pass").encode()) == b"+OK Logged in\r\n"
    )


def test_disconnect_in_the_middle_of_auth_leaves_server_up(server: Running) -> None:
    client = Raw(server.port)
    client.line()
    assert client.ask(b"AUTH PLAIN") == b"+ \r\n"
    client.close()
    server.wait_sessions()
    server.client().quit()


def test_bare_auth_lists_mechanisms(raw: Raw) -> None:
    assert raw.ask(b"AUTH") == b"+OK\r\n"
    assert raw.multiline() == [b"PLAIN\r\n"]


# ---------------------------------------------------------------------------
# maildrop state (case 029)


def test_case_029_sessions(
    tmp_path: Path,
    users_file: Path,
    tls_files: tuple[Path, Path],
) -> None:
    with serving(tmp_path, users_file, tls_files) as server:
        for n in range(3):
            server.deliver(b"Subject: m%d\n\nbody\n" % n)

        # Session A: DELE, RSET, DELE, new mail, then a dropped connection.
        a = server.client()
        uids = [line.split()[1] for line in a.uidl()[1]]
        a.dele(1)
        with pytest.raises(poplib.error_proto, match="deleted"):
            a.retr(1)
        assert [line.split()[0] for line in a.list()[1]] == [b"2", b"3"]
        a.rset()
        assert a.stat()[0] == 3
        a.dele(2)
        server.deliver(b"Subject: late\n\nnew\n")
        assert a.stat()[0] == 2
        a.sock.close()
        a.file.close()
        server.wait_sessions()

        # Session B: nothing was deleted; the new message is here.
        b = server.client()
        b_uids = [line.split()[1] for line in b.uidl()[1]]
        assert b_uids[:3] == uids
        assert len(b_uids) == 4
        b.dele(2)
        b.quit()
        server.wait_sessions()
        server.deliver(b"Subject: after\n\nx\n")

    # Restart: a new server on the same Maildir.
    with serving(tmp_path, users_file, tls_files) as server:
        c = server.client()
        c_uids = [line.split()[1] for line in c.uidl()[1]]
        assert uids[1] not in c_uids
        assert c_uids[:3] == [uids[0], uids[2], b_uids[3]]
        assert len(set(c_uids)) == 4
        c.quit()


def test_second_session_gets_in_use(server: Running) -> None:
    server.deliver(b"Subject: x\n\nx\n")
    first = server.client()
    second = poplib.POP3("127.0.0.1", server.port, timeout=30)
    second.user("alice")
    with pytest.raises(poplib.error_proto) as info:
        second.pass_("alice-pass")
    assert info.value.args[0].startswith(b"-ERR [IN-USE]")
    # bob's maildrop is not affected
    server.client("bob").quit()
    first.dele(1)
    first.quit()
    server.wait_sessions(2)
    # The lock went with the first session; the refused one may retry.
    second.user("alice")
    assert second.pass_("alice-pass").startswith(b"+OK")
    assert second.stat() == (0, 0)
    second.quit()


def test_shared_maildrop_when_sessions_are_not_locked(
    tmp_path: Path,
    users_file: Path,
    tls_files: tuple[Path, Path],
) -> None:
    # Case 029, the dovecot way: each session keeps its own snapshot;
    # a message the other one removed fails cleanly, never another one.
    with serving(tmp_path, users_file, tls_files, lock_session=False) as server:
        paths = [server.deliver(b"Subject: %d\n\nx\n" % n) for n in range(2)]
        d = server.client()
        e = server.client()
        d.dele(1)
        assert d.quit().startswith(b"+OK")
        server.wait_sessions()
        with pytest.raises(poplib.error_proto, match="no longer exists"):
            e.retr(1)
        assert e.retr(2)[1] == [b"Subject: 1", b"", b"x"]
        e.dele(1)
        assert e.quit().startswith(b"+OK")
        server.wait_sessions()
        assert server.files() == {paths[1].name}


def test_dropped_connection_keeps_deleted_messages(server: Running) -> None:
    paths = [server.deliver(b"Subject: %d\n\nx\n" % n) for n in range(3)]
    pop = server.client()
    pop.dele(1)
    pop.dele(3)
    pop.retr(2)
    pop.sock.close()
    pop.file.close()
    server.wait_sessions()
    assert server.files() == {p.name for p in paths}
    assert sorted(os.listdir(server.maildir() / "new")) == sorted(p.name for p in paths)


def test_quit_without_login_changes_nothing(server: Running) -> None:
    server.deliver(b"Subject: x\n\nx\n")
    pop = poplib.POP3("127.0.0.1", server.port, timeout=30)
    assert pop.quit().startswith(b"+OK")
    assert len(server.files()) == 1


# ---------------------------------------------------------------------------
# byte-stuffing and sizes (cases 026, 028)

CASE_028 = [
    b"Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two dots\r\nend\r\n",
    b".first line is a dot line\r\n\r\nbody\r\n",
    b"Subject: lf\r\n\r\nline\n.\nafter bare-LF dot\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
    b"Subject: big\r\n\r\n" + (b"x" * 8191 + b"\r\n.") * 200 + b"\r\n",
    b"From: a@example.org\nTo: alice@example.test\nSubject: lf only\n\n"
    b"line 1\nline 2\n",
    b"From: a@example.org\r\nSubject: mixed\n\tfolded with bare LF\r\n\r\nbody\r\n",
]


def test_retr_sizes_and_stuffing_with_poplib(
    server: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # poplib refuses lines over 2048 octets; m5 has 8191-octet lines.
    monkeypatch.setattr(poplib, "_MAXLINE", 10_000)
    for data in CASE_028:
        server.deliver(data)
    pop = server.client()
    sizes = dict(
        (int(n), int(size)) for n, size in (line.split() for line in pop.list()[1])
    )
    for n, data in enumerate(CASE_028, 1):
        _, lines, octets = pop.retr(n)
        # RFC 1939 §5: LIST size == octets RETR delivers (unstuffed).
        assert octets == sizes[n] == len(crlf(data))
        assert b"".join(line + b"\r\n" for line in lines) == crlf(data)
    pop.quit()


def test_retr_and_top_wire_bytes(server: Running, raw: Raw) -> None:
    server.deliver(CASE_028[0])
    server.deliver(CASE_028[3])
    raw.ask(b"USER alice")
    raw.ask(b"PASS alice-pass")
    assert raw.ask(b"RETR 1").startswith(b"+OK")
    stuffed = [b"Subject: dots\r\n", b"\r\n", b"..leading dot\r\n", b"..\r\n"]
    stuffed += [b"...two dots\r\n", b"end\r\n"]
    assert raw.multiline() == stuffed
    # hmailserver #126: TOP must stuff too.
    assert raw.ask(b"TOP 1 10").startswith(b"+OK")
    assert raw.multiline() == stuffed
    assert raw.ask(b"TOP 1 1").startswith(b"+OK")
    assert raw.multiline() == stuffed[:3]
    assert raw.ask(b"RETR 2").startswith(b"+OK")
    assert raw.multiline()[-1] == b"last line\r\n"


def test_lf_splitting_reader_is_not_cut_short(server: Running, raw: Raw) -> None:
    server.deliver(CASE_028[2])
    raw.ask(b"USER alice")
    raw.ask(b"PASS alice-pass")
    assert raw.ask(b"RETR 1").startswith(b"+OK")
    body = raw.multiline()
    assert body[-1] == b"after bare-LF dot\r\n"
    assert all(line.rstrip(b"\r\n") != b"." for line in body)


def test_nul_bytes_are_served_whole(server: Running) -> None:
    # Case 005: nothing is cut at a NUL; LIST size matches RETR.
    data = b"Subject: nul\n\nbefore\x00after\nnext line\n"
    server.deliver(data)
    pop = server.client()
    _, lines, octets = pop.retr(1)
    assert lines == [b"Subject: nul", b"", b"before\x00after", b"next line"]
    assert pop.list(1) == b"+OK 1 %d" % octets
    pop.quit()


def test_big_maildrop(server: Running) -> None:
    # 1000 x 5 KB, the benchmark's mailbox: every size and UIDL agree.
    body = (b"word " * 15 + b"\n") * 64
    new = server.maildir() / "new"
    md.ensure(server.maildir())
    paths = []
    for n in range(1000):
        # Written directly, without fsync: this is setup, not delivery.
        data = b"Subject: %d\n\n" % n + body
        path = new / f"{1_700_000_000 + n}.M{n}P1Q{n}.test,S={len(data)}"
        path.write_bytes(data)
        paths.append(path)
    pop = server.client()
    count, octets = pop.stat()
    assert count == 1000
    listing = pop.list()[1]
    assert sum(int(line.split()[1]) for line in listing) == octets
    uidls = [line.split()[1].decode() for line in pop.uidl()[1]]
    assert uidls == [p.name for p in paths]
    for n in (1, 500, 1000):
        _, lines, size = pop.retr(n)
        assert size == int(listing[n - 1].split()[1])
        assert lines[0] == b"Subject: %d" % (n - 1)
    pop.quit()


def test_log_lines(server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roost.pop3d")
    server.deliver(b"Subject: x\n\nx\n")
    bad = poplib.POP3("127.0.0.1", server.port, timeout=30)
    bad.user("alice\rfake")
    with pytest.raises(poplib.error_proto):
        bad.pass_("wrong")
    bad.quit()
    pop = server.client()
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    server.wait_sessions(2)
    lines = [r.getMessage() for r in caplog.records if r.name == "roost.pop3d"]
    assert any(
        re.fullmatch(r"\w+: connect from \[127\.0\.0\.1\]:\d+, tls=no", line)
        for line in lines
    )
    assert any(
        "authentication failed: user=<alice\\rfake>, method=USER, rip=127.0.0.1" in line
        for line in lines
    )
    assert any(
        line.endswith("login: user=<alice>, method=USER, rip=127.0.0.1, tls=no")
        for line in lines
    )
    assert any(
        "disconnect: user=<alice>, reason=logout, top=0, retr=1/17, del=1/1" in line
        for line in lines
    )
    # Passwords never reach the log.
    assert not any("alice-pass" in line or "wrong" in line for line in lines)


# ---------------------------------------------------------------------------
# TLS (RFC 2595, case 003)


def test_stls_then_login_with_poplib(server: Running) -> None:
    pop = poplib.POP3("127.0.0.1", server.port, timeout=5)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop.stls(context)
    assert "STLS" not in pop.capa()
    pop.user("alice")
    assert pop.pass_("alice-pass").startswith(b"+OK")
    pop.quit()


def test_stls_discards_pipelined_plaintext(raw: Raw) -> None:
    raw.sock.settimeout(5)
    raw.send(b"STLS\r\nUSER mallory\r\nCAPA\r\n")
    assert raw.line() == b"+OK Begin TLS negotiation now\r\n"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(raw.sock, server_hostname="localhost") as tls:
        tls.sendall(b"NOOP\r\n")
        reply = tls.recv(4096)
    # The first reply inside TLS answers our NOOP (illegal before login),
    # not the plaintext USER or CAPA.
    assert reply == b"-ERR NOOP not allowed now\r\n"


def test_implicit_tls_port(server: Running) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", server.tls_port, timeout=30, context=context)
    assert "STLS" not in pop.capa()
    pop.user("alice")
    assert pop.pass_("alice-pass").startswith(b"+OK")
    pop.quit()


# ---------------------------------------------------------------------------
# limits


def test_long_line_then_session_goes_on(raw: Raw) -> None:
    assert raw.ask(b"USER " + b"a" * 5000) == b"-ERR Line too long\r\n"
    assert raw.ask(b"USER alice") == b"+OK\r\n"
    assert raw.ask(b"PASS alice-pass") == b"+OK Logged in\r\n"


def test_bad_commands_close_the_session(raw: Raw) -> None:
    for _ in range(9):
        assert raw.ask(b"FOO").startswith(b"-ERR")
    assert raw.ask(b"FOO") == b"-ERR Too many bad commands\r\n"
    assert raw.line() == b""


def test_pipelined_commands_answered_in_order(server: Running, raw: Raw) -> None:
    server.deliver(b"Subject: x\n\nx\n")
    raw.send(b"USER alice\r\nPASS alice-pass\r\nSTAT\r\nDELE 1\r\nSTAT\r\nQUIT\r\n")
    replies = [raw.line() for _ in range(6)]
    assert replies[2] == b"+OK 1 17\r\n"
    assert replies[4] == b"+OK 0 0\r\n"
    assert replies[5].startswith(b"+OK")
    server.wait_sessions()
    assert server.files() == set()


# ---------------------------------------------------------------------------
# paths that need a fake connection: a non-loopback peer, idle timeout


class FakeConnection:
    """In-memory stand-in for roost.net.Connection, driven by a script."""

    def __init__(self, script: list[bytes], *, peer_ip: str = "192.0.2.7") -> None:
        self.script = list(script)
        self.sent = bytearray()
        self.peer_ip = peer_ip
        self.peer_port = 40000
        self.local_port = 110
        self.conn_id = "TEST"
        self.is_tls = False
        self.is_loopback = False
        self.tls_available = True
        self.timeout_s: float | None = None

    def set_timeout(self, seconds: float | None) -> None:
        self.timeout_s = seconds

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self.script:
            raise IdleTimeout
        return self.script.pop(0)

    async def write(self, data: bytes) -> None:
        self.sent += data

    async def start_tls(self) -> None:
        # Pretend: the bytes stay plain, the session believes in TLS.
        self.is_tls = True

    async def close(self) -> None:
        return None


class FakeUsers:
    async def averify(self, name: str, password: str) -> str | None:
        return name if password == "pw" else None


def run_fake(tmp_path: Path, script: list[bytes], *, loopback: bool = False) -> bytes:
    settings = from_values(
        {
            "data_directory": str(tmp_path / "data"),
            "mailbox_directory": str(tmp_path / "mail"),
            "pop3_timeout": "7s",
        },
    )
    service = Pop3Service(settings, FakeUsers())
    conn = FakeConnection(script)
    conn.is_loopback = loopback
    asyncio.run(service.handle(conn))  # type: ignore[arg-type]
    assert conn.timeout_s == 7
    return bytes(conn.sent)


def test_plaintext_auth_refused_off_loopback_without_tls(tmp_path: Path) -> None:
    sent = run_fake(tmp_path, [b"CAPA\r\n", b"USER alice\r\n", b"AUTH PLAIN\r\n", b""])
    lines = sent.split(b"\r\n")
    assert b"STLS" in lines
    assert b"USER" not in lines
    refusal = (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections"
    )
    assert lines.count(refusal) == 2


def test_policy_function() -> None:
    assert plaintext_auth_allowed(is_tls=False, is_loopback=True)
    assert plaintext_auth_allowed(is_tls=True, is_loopback=False)
    assert not plaintext_auth_allowed(is_tls=False, is_loopback=False)


def test_idle_timeout_says_goodbye(tmp_path: Path) -> None:
    sent = run_fake(tmp_path, [b"CAPA\r\n"])
    assert sent.endswith(b"-ERR Disconnected for inactivity\r\n")


# ---------------------------------------------------------------------------
# real clients: curl and fetchmail

CURL = shutil.which("curl")
FETCHMAIL = shutil.which("fetchmail")
MESSAGE = (
    b"From: ann@example.org\nTo: alice@example.test\nSubject: hello\n\n"
    b"first line\n.dot line\nlast line\n"
)


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    command = [CURL, "-sS", "--max-time", "20", "-u", "alice:alice-pass", *args]
    return subprocess.run(command, capture_output=True, timeout=60, check=False)


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_list_retr_top_uidl_dele(server: Running) -> None:
    path = server.deliver(MESSAGE)
    base = f"pop3://127.0.0.1:{server.port}/"
    listing = curl(base)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == b"1 %d\r\n" % len(crlf(MESSAGE))
    retr = curl(base + "1")
    assert retr.returncode == 0, retr.stderr
    assert retr.stdout == crlf(MESSAGE)
    uidl = curl(base, "-X", "UIDL")
    assert uidl.stdout == b"1 " + path.name.encode() + b"\r\n"
    top = curl(base, "-X", "TOP 1 0")
    assert top.stdout.endswith(b"Subject: hello\r\n\r\n")
    dele = curl(base + "1", "-X", "DELE", "-I")
    assert dele.returncode == 0, dele.stderr
    server.wait_sessions(5)
    assert server.files() == set()


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_pop3s(server: Running) -> None:
    server.deliver(MESSAGE)
    retr = curl("-k", f"pop3s://127.0.0.1:{server.tls_port}/1")
    assert retr.returncode == 0, retr.stderr
    assert retr.stdout == crlf(MESSAGE)


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_stls(server: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="roost.pop3d")
    server.deliver(MESSAGE)
    url = f"pop3://127.0.0.1:{server.port}/1"
    retr = curl("-k", "--ssl-reqd", url)
    assert retr.returncode == 0, retr.stderr
    assert retr.stdout == crlf(MESSAGE)
    server.wait_sessions()
    assert "login: user=<alice>, method=PLAIN, rip=127.0.0.1, tls=yes" in caplog.text


def run_fetchmail(
    server: Running,
    tmp_path: Path,
    *options: str,
    port: int | None = None,
) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    assert FETCHMAIL is not None
    home = tmp_path / "fetchmail-home"
    home.mkdir(exist_ok=True)
    out = home / "mbox"
    out.touch()
    rcfile = home / "fetchmailrc"
    rcfile.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {port or server.port} uidl\n"
        '  user "alice" there with password "alice-pass" is "alice" here\n'
        f"  options {' '.join(options)}\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n",
    )
    rcfile.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home)}
    done = subprocess.run(
        [FETCHMAIL, "--nosyslog", "-f", str(rcfile)],
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    return done, out.read_bytes()


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed")
def test_fetchmail_keep_uses_uidl_then_fetch_deletes(
    server: Running,
    tmp_path: Path,
) -> None:
    server.deliver(MESSAGE)
    # "keep" + "uidl": the second poll must see nothing new (RFC 1939 §7).
    done, mbox = run_fetchmail(server, tmp_path, "keep", 'sslproto ""')
    assert done.returncode == 0, done.stderr
    assert b"\n..dot line" not in mbox
    assert b"\n.dot line\n" in mbox
    server.wait_sessions()
    done, again = run_fetchmail(server, tmp_path, "keep", 'sslproto ""')
    assert done.returncode == 1, done.stderr  # 1: no new mail
    assert again == mbox
    server.wait_sessions()
    assert len(server.files()) == 1

    # Without keep, and with flush for the one seen before, fetchmail
    # fetches only the new one and deletes both at QUIT.
    server.deliver(MESSAGE.replace(b"hello", b"second"))
    done, mbox = run_fetchmail(server, tmp_path, "flush", 'sslproto ""')
    assert done.returncode == 0, done.stderr
    assert mbox.count(b"Subject: hello") == 1
    assert b"Subject: second" in mbox
    server.wait_sessions()
    assert server.files() == set()


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed")
def test_fetchmail_over_implicit_tls(server: Running, tmp_path: Path) -> None:
    server.deliver(MESSAGE)
    done, mbox = run_fetchmail(
        server, tmp_path, "ssl", "no sslcertck", port=server.tls_port
    )
    assert done.returncode == 0, done.stderr
    assert b"Subject: hello" in mbox
    server.wait_sessions()
    assert server.files() == set()


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed")
def test_fetchmail_with_stls(
    server: Running,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="roost.pop3d")
    server.deliver(MESSAGE)
    done, mbox = run_fetchmail(server, tmp_path, 'sslproto "tls1.2+"', "no sslcertck")
    assert done.returncode == 0, done.stderr
    assert b"Subject: hello" in mbox
    server.wait_sessions()
    assert server.files() == set()
    assert "starttls: tls=yes" in caplog.text


def test_our_bug_is_sys_temp_and_session_goes_on(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(self: Maildrop) -> list[tuple[int, int]]:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Maildrop, "known_sizes", broken)
    script = [b"USER alice\r\nPASS pw\r\n", b"STAT\r\n", b"NOOP\r\nQUIT\r\n"]
    sent = run_fake(tmp_path, [*script, b""], loopback=True).split(b"\r\n")
    assert sent[3] == b"-ERR [SYS/TEMP] Internal error"
    assert sent[4:6] == [b"+OK", b"+OK Logging out"]
    assert "STAT failed" in caplog.text
    assert "simulated bug" not in b"".join(sent).decode()


_FUZZ_LINES = st.sampled_from(
    [
        b"USER alice",
        b"PASS pw",
        b"PASS bad",
        b"AUTH PLAIN",
        b"AUTH PLAIN AGFsaWNlAHB3",
        b"AUTH PLAIN ====",
        b"*",
        b"AGFsaWNlAHB3",
        b"STAT",
        b"LIST",
        b"LIST 1",
        b"LIST 99",
        b"UIDL",
        b"RETR 1",
        b"TOP 1 0",
        b"DELE 1",
        b"RSET",
        b"NOOP",
        b"CAPA",
        b"STLS",
        b"QUIT",
        b"\xff\x00",
        b"x" * 300,
    ],
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_FUZZ_LINES, max_size=15), st.booleans())
def test_any_command_sequence_ends_cleanly(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[bytes],
    loopback: bool,
) -> None:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    maildir = md.mailbox_path(tmp_path / "mail", "alice")
    md.ensure(maildir)
    md.deliver(maildir, b"Subject: a\n\n.x\n")
    settings_ = from_values(
        {
            "data_directory": str(tmp_path / "data"),
            "mailbox_directory": str(tmp_path / "mail"),
        },
    )
    conn = FakeConnection([b"\r\n".join(lines) + b"\r\n", b""])
    conn.is_loopback = loopback
    asyncio.run(Pop3Service(settings_, FakeUsers()).handle(conn))  # type: ignore[arg-type]
    # Every reply line is a status line, a challenge or multi-line data;
    # the maildrop lock was released whatever happened.
    assert bytes(conn.sent).startswith(b"+OK")
    Maildrop.open(maildir).release()
    if b"QUIT" not in lines:
        assert len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur")) == 1


def test_off_loopback_login_works_after_stls(tmp_path: Path) -> None:
    script = [b"STLS\r\n", b"CAPA\r\n", b"USER alice\r\nPASS pw\r\nQUIT\r\n", b""]
    lines = run_fake(tmp_path, script).split(b"\r\n")
    assert b"+OK Begin TLS negotiation now" in lines
    assert b"USER" in lines
    assert b"STLS" not in lines
    assert b"+OK Logged in" in lines


# ---------------------------------------------------------------------------
# read-ahead of in-order RETRs


def _counting_start_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = Maildrop.start_read

    def counted(self: Maildrop, message: Any, *args: Any) -> Any:
        calls.append(1)
        return original(self, message, *args)

    monkeypatch.setattr(Maildrop, "start_read", counted)
    return calls


def test_in_order_retr_reads_ahead_and_serves_the_same_bytes(
    server: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(poplib, "_MAXLINE", 10_000)
    messages = [
        b"Subject: %d\n\n.dot line %d\n" % (n, n) + b"x" * (n * 97) for n in range(40)
    ]
    # bigger than any read-ahead budget: streamed from its file
    messages[17] = b"Subject: big\n\n" + (b"y" * 5000 + b"\n.\n") * 70
    messages[25] = b"Subject: no final newline\n\nlast"
    for data in messages:
        server.deliver(data)
    calls = _counting_start_read(monkeypatch)
    pop = server.client()
    sizes = [int(line.split()[1]) for line in pop.list()[1]]
    for n, data in enumerate(messages, 1):
        _, lines, octets = pop.retr(n)
        assert octets == sizes[n - 1] == len(crlf(data))
        assert b"".join(line + b"\r\n" for line in lines) == crlf(data)
    # a few trips to the disk, not one per message
    assert 1 < len(calls) < len(messages) // 2
    pop.quit()


def test_read_ahead_message_deleted_reset_and_topped(
    server: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(6):
        server.deliver(b"Subject: %d\n\nline 1\nline 2\n" % n)
    calls = _counting_start_read(monkeypatch)
    pop = server.client()
    assert pop.retr(1)[1][0] == b"Subject: 0"
    assert len(calls) == 1
    # 2..6 were read ahead with 1: TOP and RETR come from memory
    assert pop.top(3, 1)[1] == [b"Subject: 2", b"", b"line 1"]
    pop.dele(2)
    with pytest.raises(poplib.error_proto, match="deleted"):
        pop.retr(2)
    pop.rset()
    assert pop.retr(2)[1] == [b"Subject: 1", b"", b"line 1", b"line 2"]
    assert pop.retr(3)[1][0] == b"Subject: 2"
    assert pop.retr(6)[1][0] == b"Subject: 5"
    assert len(calls) == 2  # RETR 2 after RSET went to the disk again
    pop.quit()
    server.wait_sessions()
    # every retrieved message is filed as seen; none was deleted
    assert len(os.listdir(server.maildir() / "cur")) == 4


def test_no_read_ahead_when_sessions_share_the_maildrop(
    tmp_path: Path,
    users_file: Path,
    tls_files: tuple[Path, Path],
) -> None:
    # Another session may remove the next message at any time: its RETR
    # must then fail, not serve a copy read before (case 029).
    with serving(tmp_path, users_file, tls_files, lock_session=False) as server:
        for n in range(3):
            server.deliver(b"Subject: %d\n\nx\n" % n)
        e = server.client()
        assert e.retr(1)[1][0] == b"Subject: 0"
        d = server.client()
        d.dele(2)
        assert d.quit().startswith(b"+OK")
        server.wait_sessions()
        with pytest.raises(poplib.error_proto, match="no longer exists"):
            e.retr(2)
        assert e.retr(3)[1][0] == b"Subject: 2"
        e.quit()


def test_quit_releases_the_maildrop_before_its_reply(
    server: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client that logs in again right after QUIT's +OK must not get
    # [IN-USE]: the lock (and the sizes file) are done before the reply.
    released: list[str] = []
    original = Maildrop.release

    def recorded(self: Maildrop) -> None:
        original(self)
        released.append(self.maildir.name)

    monkeypatch.setattr(Maildrop, "release", recorded)
    server.deliver(b"Subject: x\n\nx\n")
    for _ in range(3):
        pop = server.client()
        pop.retr(1)
        assert pop.quit().startswith(b"+OK")
        assert released
        released.clear()
