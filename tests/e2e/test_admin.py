"""The postfix-compatible admin commands and the server's life cycle:
mailq / postqueue -p, postsuper -d ALL, postcat, sendmail while the
server is down, pflogsumm on our log, and a graceful SIGTERM."""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import uuid

from tests.conftest import RoostServer, need_binary, poll

QUEUE_ID = re.compile(r"^([0-9A-Z]{6,})[*!]?\s+\d+ ", re.M)


def token() -> str:
    return uuid.uuid4().hex


def send(server: RoostServer, recipients: list[str], tok: str) -> None:
    data = (
        f"From: sender@example.org\r\nSubject: admin {tok}\r\n"
        f"Message-ID: <{tok}@example.org>\r\n\r\nbody {tok}\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.sendmail("sender@example.org", recipients, data)


def test_mailq_empty(roost_server: RoostServer) -> None:
    roost_server.wait_queue_empty()
    for program, args in (("mailq", ()), ("postqueue", ("-p",))):
        out = roost_server.cli(program, *args).stdout
        assert out.strip() == "Mail queue is empty", out


def test_deferred_mail_listed_then_postsuper_delete_all(
    fresh_roost_server: RoostServer,
) -> None:
    server = fresh_roost_server
    tok = token()
    # the relayhost is a closed loopback port: the message is deferred
    send(server, ["someone@elsewhere.example"], tok)

    def listed() -> bool:
        out = server.cli("mailq").stdout
        return "someone@elsewhere.example" in out and "(" in out

    poll(listed, 60, "the deferred message in mailq")
    out = server.cli("postqueue", "-p").stdout
    queue_ids = QUEUE_ID.findall(out)
    assert len(queue_ids) == 1, out
    assert "sender@example.org" in out
    assert re.search(r"-- \d+ Kbytes in 1 Request\.", out), out

    shown = server.cli("postcat", "-q", queue_ids[0]).stdout
    assert f"body {tok}" in shown
    assert "someone@elsewhere.example" in shown

    result = server.cli("postsuper", "-d", "ALL")
    assert "Deleted: 1 message" in result.stderr + result.stdout
    assert server.cli("mailq").stdout.strip() == "Mail queue is empty"


def test_sendmail_while_stopped_is_delivered_at_start(
    fresh_roost_server: RoostServer,
) -> None:
    server = fresh_roost_server
    assert server.stop() == 0
    tok = token()
    message = f"Subject: offline {tok}\n\nwritten while the server was down\n"
    result = server.cli(
        "sendmail",
        "-i",
        "-f",
        "root@example.test",
        "bob@example.test",
        input=message,
    )
    assert result.returncode == 0
    # the maildrop holds it, and mailq shows it, before any server runs
    assert "bob@example.test" in server.cli("mailq").stdout
    assert server.messages("bob") == []

    server.start()
    data = server.wait_for_text("bob", tok.encode())
    # cleanup added what was missing (as postfix's cleanup does)
    assert re.search(rb"^Message-ID: <", data, re.M | re.I)
    assert re.search(rb"^Date: ", data, re.M)
    server.wait_queue_empty()


def test_sendmail_while_running(roost_server: RoostServer) -> None:
    tok = token()
    message = f"To: alice@example.test\nSubject: local {tok}\n\nhello\n"
    roost_server.cli("sendmail", "-t", "-i", input=message)
    roost_server.wait_for_text("alice", tok.encode())


def test_graceful_sigterm_loses_nothing(fresh_roost_server: RoostServer) -> None:
    server = fresh_roost_server
    tokens = [token() for _ in range(20)]
    for tok in tokens:
        send(server, ["alice@example.test", "bob@example.test"], tok)

    # a session in the middle of a transaction when the signal comes
    sock = socket.create_connection(("127.0.0.1", server.port("smtp")))
    sock.settimeout(60)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220 ")
    sock.sendall(b"HELO client.example.org\r\n")
    assert reader.readline().startswith(b"250 ")
    sock.sendall(b"MAIL FROM:<x@example.org>\r\n")
    assert reader.readline().startswith(b"250 ")

    assert server.stop(signal.SIGTERM) == 0
    # the open session was ended (421 first, or just closed)
    rest = reader.read()
    assert rest in (b"",) or rest.startswith(b"421 "), rest
    sock.close()
    log = server.log_text()
    assert "Traceback" not in log

    server.start()
    for user in ("alice", "bob"):
        server.wait_delivered(user, len(tokens))
        for tok in tokens:
            server.wait_for_text(user, tok.encode())
    server.wait_queue_empty()


def test_pflogsumm_reads_our_log(roost_server: RoostServer) -> None:
    binary = need_binary("pflogsumm")
    tok = token()
    send(roost_server, ["alice@example.test"], tok)
    roost_server.wait_for_text("alice", tok.encode())
    poll(
        lambda: "status=sent" in roost_server.log_text(),
        30,
        "a delivery line in the log",
    )
    result = subprocess.run(
        [binary, "--syslog-name=roost", str(roost_server.log_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    received = re.search(r"^\s*(\d+)\s+received", result.stdout, re.M)
    delivered = re.search(r"^\s*(\d+)\s+delivered", result.stdout, re.M)
    assert received, result.stdout
    assert delivered, result.stdout
    assert int(received.group(1)) >= 1
    assert int(delivered.group(1)) >= 1
