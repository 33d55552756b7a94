"""A new user's first hour: CLI, queue tools, STARTTLS clients, abuse.

Not from a case file: what someone trying Roost does first. Every check
runs against a real `roost serve` on loopback; floods are bounded in
count and time, and the server must still answer after each.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import (
    HOST,
    CaseServer,
    SmtpRaw,
    poll,
    running_server,
)


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def test_config_check_reports_file_and_line(tmp_path: object) -> None:
    cfg = CaseServer()
    cfg.config_dir.mkdir(parents=True)
    (cfg.config_dir / "main.cf").write_text(
        "myhostname = mx.example.test\nsmtp_port = notaport\n"
        "message_size_limit = 10x\nsmtpd_timeout = 5q\n"
    )
    result = cfg.cli("roost", "config", "check", check=False)
    assert result.returncode == 1
    main_cf = str(cfg.config_dir / "main.cf")
    for line in (2, 3, 4):
        assert f"main.cf:{line}:" in result.stderr, result.stderr
    assert main_cf.endswith("main.cf")
    serve = cfg.cli("roost", "serve", check=False)
    assert serve.returncode != 0
    cfg.cleanup()


def test_config_show_n_lists_only_set_values(server: CaseServer) -> None:
    out = server.cli("roost", "config", "show", "-n").stdout
    assert f"smtp_port = {server.port('smtp')}" in out
    assert "message_size_limit" not in out  # a default, not set in main.cf


def test_user_lifecycle(server: CaseServer) -> None:
    assert server.cli("roost", "user", "add", "eve", input="eve-pass\n").returncode == 0
    assert "eve" in server.cli("roost", "user", "list").stdout.split()
    dup = server.cli("roost", "user", "add", "eve", input="x\n", check=False)
    assert dup.returncode != 0
    for bad in ("../evil", "a/b", "", "a:b"):
        refused = server.cli("roost", "user", "add", bad, input="x\n", check=False)
        assert refused.returncode != 0, bad
    pop = server.pop3()
    assert pop.login("eve", "eve-pass").startswith(b"+OK")
    pop.cmd("QUIT")
    server.cli("roost", "user", "passwd", "eve", input="eve-new\n")
    pop = server.pop3()
    assert pop.login("eve", "eve-pass").startswith(b"-ERR")
    pop = server.pop3()
    assert pop.login("eve", "eve-new").startswith(b"+OK")
    pop.cmd("QUIT")
    server.cli("roost", "user", "del", "eve")
    assert "eve" not in server.cli("roost", "user", "list").stdout.split()
    imap = server.imap()
    assert imap.command("l", "LOGIN eve eve-new")[-1].startswith(b"l NO")


def test_sendmail_while_down_then_delivered(server: CaseServer) -> None:
    server.clear_mail("bob")
    assert server.stop() == 0
    message = "Subject: while down\n\nqueued by sendmail\n"
    server.cli(
        "sendmail", "-f", "alice@example.test", "bob@example.test", input=message
    )
    assert "bob@example.test" in server.cli("mailq").stdout
    server.start()
    (path,) = server.wait_messages("bob", 1)
    assert path.read_bytes().endswith(b"queued by sendmail\n")
    assert "empty" in server.cli("mailq").stdout.lower()


def test_postsuper_delete_all(server: CaseServer) -> None:
    server.clear_mail("bob")
    assert server.stop() == 0
    try:
        for n in range(3):
            server.cli("sendmail", "bob@example.test", input=f"Subject: {n}\n\nx\n")
        assert "3 Requests" in server.cli("mailq").stdout
        # postsuper(1): default queues, then the maildrop named explicitly
        server.cli("postsuper", "-d", "ALL")
        server.cli("postsuper", "-d", "ALL", "maildrop")
        assert "empty" in server.cli("mailq").stdout.lower()
    finally:
        server.start()
    server.wait_queue_empty()
    assert server.messages("bob") == []


@pytest.mark.parametrize(
    ("proto", "port"), [("smtp", "smtp"), ("imap", "imap"), ("pop3", "pop3")]
)
def test_openssl_starttls(server: CaseServer, proto: str, port: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed")
    quit_line = {"smtp": "QUIT\n", "imap": "a LOGOUT\n", "pop3": "QUIT\n"}[proto]
    done = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"{HOST}:{server.port(port)}",
            "-starttls",
            proto,
            "-quiet",
            "-verify_quiet",
        ],
        input=quit_line,
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = done.stdout
    assert {"smtp": "221", "imap": "a OK", "pop3": "+OK"}[proto] in out, (
        out,
        done.stderr,
    )


def _garbage(port: int, payload: bytes) -> None:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        try:
            sock.sendall(payload)
            sock.settimeout(2)
            while sock.recv(65536):
                pass
        except OSError:
            pass


@pytest.mark.parametrize(
    "port", ["smtp", "submission", "imap", "pop3", "smtps", "imaps", "pop3s"]
)
def test_garbage_and_long_lines_survived(server: CaseServer, port: str) -> None:
    payloads = [
        bytes(range(256)) * 64,
        b"\x16\x03\x01\x02\x00" + b"\x00" * 600,  # a TLS hello on a plain port
        b"A" * 2_000_000,
        b"\r\n" * 10000,
        b"a1 APPEND INBOX {4294967295}\r\n",
    ]
    for payload in payloads:
        _garbage(server.port(port), payload)
    assert server.smtp().cmd("NOOP") == 250
    assert server.imap().command("n", "NOOP")[-1].startswith(b"n OK")
    assert server.proc is not None
    assert server.proc.poll() is None


@pytest.mark.parametrize("port", ["smtp", "imap", "pop3"])
def test_two_thousand_connections(server: CaseServer, port: str) -> None:
    def one(_: int) -> bool:
        try:
            with socket.create_connection(
                (HOST, server.port(port)), timeout=10
            ) as sock:
                sock.settimeout(10)
                return bool(sock.recv(1024))
        except OSError:
            return False

    with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(one, range(2000)))
    # per-client limits may refuse some; the server must survive and serve
    assert sum(results) > 0
    poll(lambda: _answers(server), "the server to answer again")


def _answers(server: CaseServer) -> bool:
    try:
        return SmtpRaw(server.port("smtp")).cmd("NOOP") == 250
    except (OSError, AssertionError, ConnectionError):
        return False


def test_sigterm_with_open_sessions_loses_nothing() -> None:
    gen = running_server(users={"alice": "alice-pass"})
    server = next(gen)
    imap = server.imap()
    imap.login("alice", "alice-pass")
    imap.command("s", "SELECT INBOX")
    imap.send(b"i IDLE\r\n")
    assert imap.read_line().startswith(b"+")
    pop = server.pop3()
    pop.login("alice", "alice-pass")
    mid = server.smtp()
    mid.ehlo()
    assert mid.cmd("MAIL FROM:<a@example.org>") == 250
    assert mid.cmd("RCPT TO:<alice@example.test>") == 250
    assert mid.cmd("DATA") == 354
    mid.send(b"Subject: half\r\n\r\nnot finished")
    done = server.smtp()
    done.ehlo()
    code = done.transaction(
        "a@example.org", ["alice@example.test"], b"Subject: whole\r\n\r\nx\r\n.\r\n"
    )
    assert code == 250
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    server.proc = None
    # the accepted message is in the Maildir or still queued: never lost
    server.start()
    files = server.wait_messages("alice", 1)
    bodies = b"".join(p.read_bytes() for p in files)
    assert b"Subject: whole" in bodies
    assert b"Subject: half" not in bodies
    for _ in gen:
        pass
