"""smtplib and raw sockets against a running `roost serve` on loopback."""

from __future__ import annotations

import smtplib
import socket
import ssl
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RoostServer


def token() -> str:
    return uuid.uuid4().hex


def message(tok: str, subject: str = "hello") -> bytes:
    return (
        f"From: sender@example.org\r\nTo: alice@example.test\r\n"
        f"Subject: {subject} {tok}\r\nMessage-ID: <{tok}@example.org>\r\n"
        f"\r\nbody {tok}\r\n"
    ).encode()


def client_context() -> ssl.SSLContext:
    # the server's certificate is self-signed
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_ehlo_features(roost_server: RoostServer) -> None:
    with smtplib.SMTP("127.0.0.1", roost_server.port("smtp")) as client:
        code, banner = client.ehlo("client.example.org")
        assert code == 250
        assert banner.splitlines()[0].startswith(b"mx.example.test")
        for feature in ("pipelining", "size", "8bitmime", "starttls"):
            assert client.has_extn(feature), feature
        assert client.esmtp_features["size"] == "10240000"


def test_starttls_then_ehlo_again(roost_server: RoostServer) -> None:
    with smtplib.SMTP("127.0.0.1", roost_server.port("submission")) as client:
        client.starttls(context=client_context())
        client.ehlo("client.example.org")
        # RFC 3207 4.2: STARTTLS is not offered again after the upgrade
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")


def test_smtps_auth_and_submission(roost_server: RoostServer) -> None:
    tok = token()
    port = roost_server.port("smtps")
    with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context()) as client:
        client.login("alice", roost_server.users["alice"])
        client.sendmail("alice@example.test", ["bob@example.test"], message(tok))
    roost_server.wait_for_text("bob", tok.encode())


def test_wrong_password_is_535(roost_server: RoostServer) -> None:
    port = roost_server.port("smtps")
    with smtplib.SMTP_SSL("127.0.0.1", port, context=client_context()) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice", "not-the-password")
        assert info.value.smtp_code == 535


def test_pipelined_transaction(roost_server: RoostServer) -> None:
    # RFC 2920 3.1: MAIL, RCPT and DATA may be sent in one group
    tok = token()
    with socket.create_connection(("127.0.0.1", roost_server.port("smtp"))) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.example.org\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(
            b"MAIL FROM:<sender@example.org>\r\n"
            b"RCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\n"
            b"DATA\r\n"
        )
        replies = [reader.readline()[:3] for _ in range(4)]
        assert replies == [b"250", b"250", b"250", b"354"]
        sock.sendall(message(tok) + b".\r\nQUIT\r\n")
        assert reader.readline().startswith(b"250 ")
        assert reader.readline().startswith(b"221 ")
    roost_server.wait_for_text("alice", tok.encode())
    roost_server.wait_for_text("bob", tok.encode())


def test_size_over_limit_is_552(roost_factory: Callable[..., RoostServer]) -> None:
    server = roost_factory(message_size_limit="20000")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo("client.example.org")
        assert client.esmtp_features["size"] == "20000"
        # declared too large: refused at MAIL FROM (RFC 1870 6.1)
        code, text = client.mail("sender@example.org", ["SIZE=30000"])
        assert (code, text[:5]) == (552, b"5.3.4")
        client.rset()

        # undeclared, but the data itself is too large (case 011)
        big = message(token()) + b"x" * 76 + b"\r\n"
        big += b"y" * 78 * 400 + b"\r\n"
        assert client.mail("sender@example.org")[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        code, text = client.data(big)
        assert (code, text[:5]) == (552, b"5.3.4")
    assert server.messages("alice") == []


def test_unknown_local_user_is_550_5_1_1(roost_server: RoostServer) -> None:
    with smtplib.SMTP("127.0.0.1", roost_server.port("smtp")) as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        code, text = client.rcpt("nobody-here@example.test")
        assert code == 550
        assert text.startswith(b"5.1.1")


def test_relay_is_deferred_by_default_for_strangers(
    roost_factory: Callable[..., RoostServer],
) -> None:
    # loopback is not in mynetworks here, so 127.0.0.1 is a stranger;
    # postfix's default ends in defer_unauth_destination: 454 4.7.1
    server = roost_factory(mynetworks="192.0.2.0/24")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        code, text = client.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (454, b"4.7.1")
        # local mail is still accepted from strangers
        assert client.rcpt("alice@example.test")[0] == 250


def test_relay_refused_554_5_7_1(roost_factory: Callable[..., RoostServer]) -> None:
    server = roost_factory(
        mynetworks="192.0.2.0/24",
        smtpd_relay_restrictions=(
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        ),
    )
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        code, text = client.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (554, b"5.7.1")


def test_recipient_delimiter_tag(roost_server: RoostServer) -> None:
    tok = token()
    with smtplib.SMTP("127.0.0.1", roost_server.port("smtp")) as client:
        client.sendmail("sender@example.org", ["bob+lists@example.test"], message(tok))
    data = roost_server.wait_for_text("bob", tok.encode())
    assert b"Delivered-To: bob+lists@example.test" in data


def test_alias_maps_file(
    tmp_path: Path, roost_factory: Callable[..., RoostServer]
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text(
        "# test aliases\npostmaster: alice\nteam: alice, bob\nsales:\tbob\n"
    )
    server = roost_factory(alias_maps=f"hash:{aliases}")
    tok = token()
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as client:
        client.sendmail(
            "sender@example.org",
            ["team@example.test", "postmaster@example.test", "Sales@Example.TEST"],
            message(tok),
        )
    # team and postmaster both reach alice: one copy (postfix's local
    # drops duplicate final recipients of one message)
    server.wait_for_text("alice", tok.encode())
    server.wait_for_text("bob", tok.encode())


def test_rset_and_noop_and_vrfy(roost_server: RoostServer) -> None:
    with smtplib.SMTP("127.0.0.1", roost_server.port("smtp")) as client:
        client.ehlo("client.example.org")
        assert client.noop()[0] == 250
        client.mail("sender@example.org")
        assert client.rset()[0] == 250
        # after RSET there is no transaction: RCPT is out of order
        assert client.rcpt("alice@example.test")[0] == 503


SMUGGLING_SEPARATORS = [b"\n.\r\n", b"\n.\n", b"\r\n.\n"]


@pytest.mark.parametrize("pipelined", [False, True], ids=["lockstep", "pipelined"])
@pytest.mark.parametrize("separator", SMUGGLING_SEPARATORS, ids=repr)
def test_case_001_smuggling_lands_one_message(
    roost_server: RoostServer, separator: bytes, pipelined: bool
) -> None:
    """Only CRLF.CRLF ends DATA (RFC 5321 4.1.1.4, 2.3.8; case 001)."""
    tok = token()
    body = (
        b"From: news@example.org\r\nSubject: first "
        + tok.encode()
        + b"\r\n\r\nhello"
        + separator
        + b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nFrom: ceo@example.org\r\nSubject: smuggled "
        + tok.encode()
        + b"\r\n\r\npay now\r\n.\r\n"
    )
    envelope = b"MAIL FROM:<news@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
    with socket.create_connection(("127.0.0.1", roost_server.port("smtp"))) as sock:
        sock.settimeout(30)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"EHLO relay.example.org\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        if pipelined:
            sock.sendall(envelope + b"DATA\r\n")
            replies = [reader.readline()[:3] for _ in range(3)]
        else:
            replies = []
            for line in envelope.splitlines(keepends=True) + [b"DATA\r\n"]:
                sock.sendall(line)
                replies.append(reader.readline()[:3])
        assert replies == [b"250", b"250", b"354"]

        sock.sendall(body)
        final = reader.readline()
        # exactly one reply to the whole blob, then QUIT is answered next
        sock.sendall(b"QUIT\r\n")
        rest = reader.read()
    assert final[:1] in (b"2", b"5"), final
    assert [line[:3] for line in rest.splitlines()] in ([b"221"], []), rest

    # the queue is drained, so any second message would be there too
    roost_server.wait_queue_empty()
    landed = [
        data
        for data in map(Path.read_bytes, roost_server.messages("alice"))
        if tok.encode() in data
    ]
    assert len(landed) == (1 if final.startswith(b"250") else 0)
    for data in landed:
        headers = data.split(b"\n\n", 1)[0]
        assert b"Subject: smuggled" not in headers
