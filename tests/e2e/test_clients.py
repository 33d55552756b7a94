"""Real mail clients against a running `roost serve`: swaks, curl, poplib,
fetchmail and mbsync (isync). Each test sends a message with a unique
token and looks for that token, so tests share one server per module."""

from __future__ import annotations

import os
import poplib
import re
import smtplib
import ssl
import subprocess
import uuid
from pathlib import Path

from tests.conftest import RoostServer, need_binary

RUN_TIMEOUT_S = 60


def token() -> str:
    return uuid.uuid4().hex


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a client; fail with its output unless it exits 0."""
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, (
        f"{argv[0]} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def deliver(server: RoostServer, user: str, tok: str, extra: str = "") -> None:
    """Queue a message for user over SMTP and wait until it is filed."""
    data = (
        f"From: sender@example.org\r\nTo: {user}@example.test\r\n"
        f"Subject: token {tok}\r\nMessage-ID: <{tok}@example.org>\r\n"
        f"\r\nbody {tok}\r\n{extra}"
    ).encode()
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.sendmail("sender@example.org", [f"{user}@example.test"], data)
    server.wait_for_text(user, tok.encode())


def insecure_context() -> ssl.SSLContext:
    # the server's certificate is self-signed
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# swaks


def swaks(
    server: RoostServer, tok: str, *args: str, sender: str = "sender@example.org"
) -> str:
    argv = [
        need_binary("swaks"),
        "--server",
        "127.0.0.1",
        "--from",
        sender,
        "--helo",
        "client.example.org",
        "--header",
        f"Subject: swaks {tok}",
        "--body",
        f"body {tok}",
        "--timeout",
        "30",
        *args,
    ]
    return run(argv).stdout


def test_swaks_plain(roost_server: RoostServer) -> None:
    tok = token()
    out = swaks(
        roost_server,
        tok,
        "--port",
        str(roost_server.port("smtp")),
        "--to",
        "alice@example.test",
    )
    assert re.search(r"<-  250 .*queued as", out), out
    roost_server.wait_for_text("alice", tok.encode())


def test_swaks_starttls(roost_server: RoostServer) -> None:
    tok = token()
    out = swaks(
        roost_server,
        tok,
        "--port",
        str(roost_server.port("smtp")),
        "--to",
        "bob@example.test",
        "--tls",
    )
    assert "TLS started" in out, out
    data = roost_server.wait_for_text("bob", tok.encode())
    assert b"with ESMTPS" in data


def test_swaks_auth_plain_on_submission(roost_server: RoostServer) -> None:
    tok = token()
    out = swaks(
        roost_server,
        tok,
        "--port",
        str(roost_server.port("submission")),
        "--to",
        "bob@example.test",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        roost_server.users["alice"],
        # an authenticated client sends as its own address
        sender="alice@example.test",
    )
    assert "235 " in out, out
    data = roost_server.wait_for_text("bob", tok.encode())
    assert b"with ESMTPSA" in data


def test_swaks_auth_bad_password_fails(roost_server: RoostServer) -> None:
    argv = [
        need_binary("swaks"),
        "--server",
        "127.0.0.1",
        "--port",
        str(roost_server.port("submission")),
        "--to",
        "bob@example.test",
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "wrong",
        "--timeout",
        "30",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "535 " in result.stdout


# curl: SMTP


def curl(*args: str) -> str:
    return run([need_binary("curl"), "--silent", "--show-error", *args]).stdout


def mail_file(tmp_path: Path, tok: str) -> Path:
    path = tmp_path / "message.eml"
    path.write_bytes(
        f"From: sender@example.org\r\nTo: alice@example.test\r\n"
        f"Subject: curl {tok}\r\n\r\nbody {tok}\r\n".encode()
    )
    return path


def test_curl_smtp(roost_server: RoostServer, tmp_path: Path) -> None:
    tok = token()
    curl(
        f"smtp://127.0.0.1:{roost_server.port('smtp')}/client.example.org",
        "--mail-from",
        "sender@example.org",
        "--mail-rcpt",
        "alice@example.test",
        "--upload-file",
        str(mail_file(tmp_path, tok)),
    )
    data = roost_server.wait_for_text("alice", tok.encode())
    assert b"with ESMTP " in data


def test_curl_smtp_starttls_required(roost_server: RoostServer, tmp_path: Path) -> None:
    tok = token()
    curl(
        f"smtp://127.0.0.1:{roost_server.port('submission')}/client.example.org",
        "--ssl-reqd",
        "--insecure",
        "--user",
        f"alice:{roost_server.users['alice']}",
        "--mail-from",
        "alice@example.test",
        "--mail-rcpt",
        "alice@example.test",
        "--upload-file",
        str(mail_file(tmp_path, tok)),
    )
    data = roost_server.wait_for_text("alice", tok.encode())
    assert b"with ESMTPSA" in data


def test_curl_smtps(roost_server: RoostServer, tmp_path: Path) -> None:
    tok = token()
    curl(
        f"smtps://127.0.0.1:{roost_server.port('smtps')}/client.example.org",
        "--insecure",
        "--user",
        f"alice:{roost_server.users['alice']}",
        "--mail-from",
        "alice@example.test",
        "--mail-rcpt",
        "alice@example.test",
        "--upload-file",
        str(mail_file(tmp_path, tok)),
    )
    roost_server.wait_for_text("alice", tok.encode())


# curl: IMAP and POP3


def imap_url(server: RoostServer, tls: bool, path: str = "") -> str:
    scheme, port = ("imaps", "imaps") if tls else ("imap", "imap")
    return f"{scheme}://127.0.0.1:{server.port(port)}/{path}"


def curl_imap_fetch(server: RoostServer, tls: bool, tok: str) -> None:
    user = ["--user", f"alice:{server.users['alice']}"]
    tls_args = ["--insecure"] if tls else []
    listing = curl(imap_url(server, tls), *user, *tls_args)
    assert re.search(r'^\* LIST \([^)]*\) "[./]" "?INBOX"?\r?$', listing, re.M), listing
    assert "Sent" in listing

    found = curl(
        imap_url(server, tls, "INBOX"),
        *user,
        *tls_args,
        "--request",
        f"SEARCH SUBJECT {tok}",
    )
    numbers = re.findall(r"^\* SEARCH ([0-9 ]+)", found, re.M)
    assert len(numbers) == 1, found
    assert len(numbers[0].split()) == 1, found

    body = curl(
        imap_url(server, tls, f"INBOX/;MAILINDEX={numbers[0]}"), *user, *tls_args
    )
    assert f"Subject: token {tok}" in body
    assert f"body {tok}" in body


def test_curl_imap_list_search_fetch(roost_server: RoostServer) -> None:
    tok = token()
    deliver(roost_server, "alice", tok)
    curl_imap_fetch(roost_server, tls=False, tok=tok)


def test_curl_imaps_list_search_fetch(roost_server: RoostServer) -> None:
    tok = token()
    deliver(roost_server, "alice", tok)
    curl_imap_fetch(roost_server, tls=True, tok=tok)


def curl_pop3_retr(server: RoostServer, tls: bool, tok: str) -> None:
    scheme = "pop3s" if tls else "pop3"
    base = f"{scheme}://127.0.0.1:{server.port(scheme)}/"
    args = ["--user", f"bob:{server.users['bob']}"]
    args += ["--insecure"] if tls else []
    listing = curl(base, *args)
    numbers = re.findall(r"^(\d+) \d+\r?$", listing, re.M)
    assert numbers, listing
    bodies = [curl(base + n, *args) for n in numbers]
    matching = [b for b in bodies if f"body {tok}" in b]
    assert len(matching) == 1


def test_curl_pop3_list_retr(roost_server: RoostServer) -> None:
    tok = token()
    deliver(roost_server, "bob", tok)
    curl_pop3_retr(roost_server, tls=False, tok=tok)


def test_curl_pop3s_list_retr(roost_server: RoostServer) -> None:
    tok = token()
    deliver(roost_server, "bob", tok)
    curl_pop3_retr(roost_server, tls=True, tok=tok)


# poplib


def find_message(client: poplib.POP3, tok: str) -> int:
    """The number of the message whose body holds tok."""
    _, listing, _ = client.list()
    for line in listing:
        number = int(line.split()[0])
        _, lines, _ = client.retr(number)
        if f"body {tok}".encode() in lines:
            return number
    raise AssertionError(f"no message with {tok}")


def test_poplib_stat_uidl_top_retr(roost_server: RoostServer) -> None:
    tok = token()
    deliver(roost_server, "bob", tok, extra=".leading dot line\r\n")
    client = poplib.POP3("127.0.0.1", roost_server.port("pop3"), timeout=30)
    try:
        client.user("bob")
        client.pass_(roost_server.users["bob"])
        count, size = client.stat()
        assert count >= 1
        assert size > 0
        number = find_message(client, tok)
        # "+OK n unique-id" (RFC 1939 7)
        ok, listed, unique_id = client.uidl(number).split()
        assert (ok, listed) == (b"+OK", str(number).encode())
        assert 0 < len(unique_id) <= 70
        # TOP n 0: headers and the blank line only (RFC 1939 7)
        _, top, _ = client.top(number, 0)
        assert f"Subject: token {tok}".encode() in top
        assert top[-1] == b""
        # byte-stuffing is undone by poplib: the dot line comes back whole
        _, lines, _ = client.retr(number)
        assert b".leading dot line" in lines
    finally:
        client.quit()


def test_poplib_dele_commits_on_quit(fresh_roost_server: RoostServer) -> None:
    server = fresh_roost_server
    tok = token()
    deliver(server, "bob", tok)
    client = poplib.POP3_SSL(
        "127.0.0.1", server.port("pop3s"), context=insecure_context(), timeout=30
    )
    client.user("bob")
    client.pass_(server.users["bob"])
    assert client.stat()[0] == 1
    client.dele(1)
    client.quit()
    assert server.messages("bob") == []


def test_poplib_stls(roost_server: RoostServer) -> None:
    client = poplib.POP3("127.0.0.1", roost_server.port("pop3"), timeout=30)
    try:
        assert "STLS" in client.capa()
        client.stls(context=insecure_context())
        client.user("alice")
        client.pass_(roost_server.users["alice"])
        assert client.stat()[0] >= 0
    finally:
        client.quit()


# fetchmail


def fetchmail(server: RoostServer, tmp_path: Path, ssl_on: bool) -> Path:
    """Download alice's mail with fetchmail into an mbox-like file."""
    binary = need_binary("fetchmail")
    out = tmp_path / "fetched.txt"
    port = server.port("pop3s" if ssl_on else "pop3")
    tls = "ssl no sslcertck" if ssl_on else "sslproto '' "
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {port} protocol POP3 timeout 30\n"
        f"  user 'alice' there with password '{server.users['alice']}'\n"
        f"  is 'localuser' here\n"
        f"  keep {tls}\n"
        f'  mda "cat >> {out}"\n'
    )
    # fetchmail refuses a run control file others may read
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    run(
        [
            binary,
            "--nosyslog",
            "--nodetach",
            "-f",
            str(rc),
            "--pidfile",
            str(tmp_path / "fetchmail.pid"),
        ],
        env=env,
    )
    return out


def test_fetchmail_pop3(roost_server: RoostServer, tmp_path: Path) -> None:
    tok = token()
    deliver(roost_server, "alice", tok)
    out = fetchmail(roost_server, tmp_path, ssl_on=False)
    text = out.read_text()
    assert f"Subject: token {tok}" in text
    # keep: the messages are still on the server
    roost_server.wait_for_text("alice", tok.encode())


def test_fetchmail_pop3s(roost_server: RoostServer, tmp_path: Path) -> None:
    tok = token()
    deliver(roost_server, "alice", tok)
    out = fetchmail(roost_server, tmp_path, ssl_on=True)
    assert f"Subject: token {tok}" in out.read_text()


# mbsync (isync)


def test_mbsync_pulls_into_local_maildir(
    roost_server: RoostServer, tmp_path: Path
) -> None:
    binary = need_binary("mbsync")
    tok = token()
    deliver(roost_server, "bob", tok)
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount roost\n"
        # isync 1.4 matches DNS names only, not IP address SANs
        f"Host localhost\n"
        f"Port {roost_server.port('imaps')}\n"
        f"User bob\n"
        f"Pass {roost_server.users['bob']}\n"
        f"SSLType IMAPS\n"
        # the self-signed certificate is trusted as it is
        f"CertificateFile {roost_server.cert_file}\n"
        f"\n"
        f"IMAPStore remote\nAccount roost\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n"
        f"SubFolders Verbatim\n\n"
        f"Channel pull\nFar :remote:\nNear :local:\nPatterns *\n"
        f"Create Near\nSync Pull\nSyncState *\n"
    )
    env = dict(os.environ, HOME=str(tmp_path))
    run([binary, "-c", str(rc), "-a"], env=env)

    inbox = [
        p.read_bytes()
        for sub in ("new", "cur")
        for p in (local / "INBOX" / sub).iterdir()
    ]
    assert sum(f"body {tok}".encode() in data for data in inbox) == 1
    # the special folders the server made for bob came along
    assert (local / "Sent").is_dir()

    # a second run finds nothing new and changes nothing
    run([binary, "-c", str(rc), "-a"], env=env)
    again = [p for sub in ("new", "cur") for p in (local / "INBOX" / sub).iterdir()]
    assert len(again) == len(inbox)
