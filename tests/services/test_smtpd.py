"""smtpd on a loopback port, driven by smtplib and by raw sockets."""

from __future__ import annotations

import base64
import logging
import smtplib
from pathlib import Path

import pytest

from .smtpd_fixtures import Raw, Server, open_raw, server, start_server

__all__ = ["server"]

EHLO = b"EHLO client.example.org"


def transaction(raw: Raw, sender: bytes = b"<sender@example.org>") -> None:
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:" + sender) == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    assert raw.command(b"DATA") == 354


def test_smtplib_sends_a_message(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        code, text = client.ehlo("client.example.org")
        assert code == 250
        for word in (b"PIPELINING", b"SIZE 1048576", b"8BITMIME", b"STARTTLS"):
            assert word in text
        assert b"ENHANCEDSTATUSCODES" in text
        assert b"SMTPUTF8" in text
        refused = client.sendmail(
            "sender@example.org",
            ["alice@example.test", "bob+tag@example.test"],
            b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n",
        )
        assert refused == {}
    ((envelope, data),) = server.spool.messages
    assert envelope.mail_from == "sender@example.org"
    assert [r.address for r in envelope.recipients] == [
        "alice@example.test",
        "bob+tag@example.test",
    ]
    assert envelope.helo == "client.example.org"
    assert envelope.client_ip == "127.0.0.1"
    assert data.startswith(b"Received: from client.example.org (localhost [127.0.0.1])")
    assert b"\r\n\tby mx.example.test (Roost) with ESMTP id Q0001;" in data
    assert data.endswith(b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n")


def test_reply_250_names_the_queue_id_and_received_has_for(server: Server) -> None:
    raw = open_raw(server)
    transaction(raw)
    raw.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
    code, lines = raw.reply()
    assert code == 250
    assert lines[-1] == b"250 2.0.0 Ok: queued as Q0001\r\n"
    ((_, data),) = server.spool.messages
    assert b"id Q0001\r\n\tfor <alice@example.test>; " in data


def test_unknown_local_user_550_and_queue_id_at_first_recipient(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # postfix opens the queue file (queue id, "client=" line) at the
    # first accepted RCPT: refusals before it are NOQUEUE, after it carry
    # the queue id
    caplog.set_level(logging.INFO, logger="roost.smtpd")
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("client.example.org")
        client.mail("sender@example.org")
        code, text = client.rcpt("nobody@example.test")
        assert client.rcpt("alice@example.test")[0] == 250
        later = client.rcpt("nobody2@example.test")
    server.stop()  # waits for the session to end and log its disconnect
    assert code == 550
    assert text.startswith(b"5.1.1 <nobody@example.test>: Recipient address rejected")
    assert later[0] == 550
    assert later[1].endswith(b" (Q0001)")
    lines = [r.getMessage() for r in caplog.records]
    tail = "; from=<sender@example.org> to=<{}> proto=ESMTP helo=<client.example.org>"
    first = [
        i
        for i, line in enumerate(lines)
        if line.startswith(
            "NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 "
        )
        and line.endswith(tail.format("nobody@example.test"))
    ]
    opened = lines.index("Q0001: client=localhost[127.0.0.1]")
    second = [
        i
        for i, line in enumerate(lines)
        if line.startswith("Q0001: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 ")
        and line.endswith(tail.format("nobody2@example.test"))
    ]
    assert first
    assert second
    assert first[0] < opened < second[0]
    assert any(line.startswith("connect from localhost[127.0.0.1]") for line in lines)
    assert any(
        line.startswith("disconnect from localhost[127.0.0.1]") for line in lines
    )


def test_mynetworks_may_relay_and_it_is_queued(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.sendmail("a@example.test", ["someone@elsewhere.example"], b"x\r\n")
    ((envelope, _),) = server.spool.messages
    assert envelope.recipients[0].address == "someone@elsewhere.example"


@pytest.mark.parametrize(
    ("restriction", "code"),
    [("reject_unauth_destination", 554), ("defer_unauth_destination", 454)],
)
def test_strangers_may_not_relay(tmp_path: Path, restriction: str, code: int) -> None:
    srv = start_server(
        tmp_path,
        mynetworks="192.0.2.0/24",
        smtpd_relay_restrictions=f"permit_mynetworks permit_sasl_authenticated "
        f"{restriction}",
    )
    try:
        raw = open_raw(srv)
        assert raw.command(EHLO) == 250
        assert raw.command(b"MAIL FROM:<x@example.org>") == 250
        # case 008: judged by the final domain, never the route's first hop
        assert (
            raw.command(b"RCPT TO:<@mx.example.test:victim@elsewhere.example>") == code
        )
        # issue 3: the classic tricks
        for trick in (
            b"<victim%elsewhere.example@example.test>",
            b"<elsewhere.example!victim@example.test>",
            b'<"victim@elsewhere.example"@example.test>',
            b"<victim@[192.0.2.9]>",
        ):
            assert raw.command(b"RCPT TO:" + trick) == code, trick
        assert raw.command(b"RCPT TO:<victim@elsewhere.example@example.test>") == 501
        assert raw.command(b"RCPT TO:<alice@example.test.>") == 501
        assert (
            raw.command(
                b"RCPT TO:<@hop1.example.org,@hop2.example.org:alice@example.test>"
            )
            == 250
        )
        raw.close()
    finally:
        srv.stop()


def test_issue_007_quoted_local_parts(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b'MAIL FROM:<"Jane Doe"@example.org>') == 250
    assert raw.command(b'RCPT TO:<"alice"@example.test>') == 250
    assert raw.command(b'RCPT TO:<"bob> NOTIFY=NEVER"@example.test>') == 550
    assert raw.command(b'RCPT TO:<" "@example.test>') == 550
    assert raw.command(b'RCPT TO:<just"not"right@example.test>') == 501
    assert raw.command(b'RCPT TO:<"a\\"b\\\\c"@example.test>') == 550
    assert raw.command(b"DATA") == 354
    raw.send(b"Subject: q\r\n\r\nx\r\n.\r\n")
    assert raw.code() == 250
    ((envelope, _),) = server.spool.messages
    assert envelope.mail_from == '"Jane Doe"@example.org'
    assert [r.address for r in envelope.recipients] == ["alice@example.test"]


def test_issue_008_source_route_stripped(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert (
        raw.command(
            b"MAIL FROM:<@hop1.example.org,@hop2.example.org:sender@example.org>"
        )
        == 250
    )
    assert raw.command(b"RCPT TO:<@hop1.example.org alice@example.test>") == 501
    assert raw.command(b"RCPT TO:<@:alice@example.test>") == 501
    assert raw.command(b"RCPT TO:<@hop1.example.org:alice@example.test>") == 250
    assert raw.command(b"DATA") == 354
    raw.send(b"Subject: route\r\n\r\nx\r\n.\r\n")
    assert raw.code() == 250
    ((envelope, _),) = server.spool.messages
    assert envelope.mail_from == "sender@example.org"
    assert envelope.recipients[0].address == "alice@example.test"


@pytest.mark.parametrize("separator", [b"\n.\r\n", b"\n.\n", b"\r\n.\n"])
@pytest.mark.parametrize("pipelined", [False, True])
def test_issue_001_smuggling_over_a_socket(
    server: Server, separator: bytes, pipelined: bool
) -> None:
    raw = open_raw(server)
    if pipelined:
        assert raw.command(EHLO) == 250
        raw.send(
            b"MAIL FROM:<news@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        )
        assert [raw.code(), raw.code(), raw.code()] == [250, 250, 354]
    else:
        transaction(raw, b"<news@example.org>")
    raw.send(
        b"From: news@example.org\r\nSubject: first\r\n\r\nhello"
        + separator
        + b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nFrom: ceo@example.org\r\nSubject: smuggled\r\n\r\npay now\r\n"
        b".\r\nNOOP\r\n"
    )
    first, lines = raw.reply()
    assert first == 250
    assert b"queued as" in lines[-1]
    assert raw.reply()[1] == [b"250 2.0.0 Ok\r\n"]  # the NOOP, nothing between
    ((_, data),) = server.spool.messages
    assert b"\r\nMAIL FROM:<ceo@example.org>\r\n" in data
    header_end = data.index(b"\r\n\r\n")
    assert b"Subject: smuggled" not in data[:header_end]


def test_issue_004_long_line_in_data_gets_one_reply(server: Server) -> None:
    raw = open_raw(server)
    transaction(raw)
    raw.send(
        b"Subject: long\r\n\r\n" + b"b" * 5000 + b"\r\nRSET\r\nQUIT\r\n.\r\nNOOP\r\n"
    )
    assert raw.code() == 250
    assert raw.code() == 250  # NOOP: RSET/QUIT in the body were text
    ((_, data),) = server.spool.messages
    assert b"b" * 5000 + b"\r\nRSET\r\nQUIT\r\n" in data


def test_issue_004_overlong_command(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<sender@example.org> XYZ=" + b"x" * 4000) == 500
    assert raw.command(b"NOOP") == 250


def test_issue_011_size(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<s@example.org> SIZE=99999999999999999999") == 552
    assert raw.command(b"MAIL FROM:<s@example.org> SIZE=999999999999999999999") == 501
    assert raw.command(b"MAIL FROM:<s@example.org> SIZE=-1") == 501
    assert raw.command(b"MAIL FROM:<s@example.org> SIZE=1000 SIZE=2000") == 501
    assert raw.command(b"MAIL FROM:<s@example.org> SIZE=1000") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    assert raw.command(b"DATA") == 354
    line = b"x" * 76 + b"\r\n"
    for _ in range(55):
        raw.send(line * 1000)
    raw.send(b".\r\n")
    code, lines = raw.reply()
    assert code == 552
    assert lines[0].startswith(b"552 5.3.4")
    assert raw.command(b"NOOP") == 250
    assert server.spool.messages == []


def test_issue_011_size_with_smtplib(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("c.example.org")
        # smtplib would declare SIZE= and be refused at MAIL; declare none
        client.mail("s@example.org")
        client.rcpt("alice@example.test")
        code, _ = client.data(b"y" * 2_000_000)
        assert code == 552
        assert client.noop()[0] == 250
    assert server.spool.messages == []


def test_issue_006_body_parameter_and_8bit(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"MAIL FROM:<sender@example.org> BODY=7bit") == 250
    assert raw.command(b"RSET") == 250
    assert raw.command(b"MAIL FROM:<sender@example.org> BODY=BINARYMIME") == 555
    assert raw.command(b"MAIL FROM:<sender@example.org> body=8bitmime") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    assert raw.command(b"DATA") == 354
    body = b"Subject: caf\xe9\r\n\r\nd\xe9j\xe0 vu \xff\r\n"
    raw.send(body + b".\r\n")
    assert raw.code() == 250
    ((envelope, data),) = server.spool.messages
    assert data.endswith(body)
    assert envelope.body_type == "8BITMIME"


def test_issue_005_nul_in_data(server: Server) -> None:
    raw = open_raw(server)
    transaction(raw)
    raw.send(b"Subject: nul\r\n\r\nbefore\x00after\r\nsecond line\r\n.\r\n")
    assert raw.code() == 550
    assert raw.command(b"NOOP") == 250
    assert server.spool.messages == []


def test_issue_013_null_sender(server: Server) -> None:
    raw = open_raw(server)
    transaction(raw, b"<>")
    raw.send(b"Subject: Undelivered\r\n\r\nx\r\n.\r\n")
    assert raw.code() == 250
    ((envelope, _),) = server.spool.messages
    assert envelope.mail_from == ""


def test_issue_014_order_and_pregreet(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 503
    assert raw.command(b"RCPT TO:<alice@example.test>") == 503
    assert raw.command(b"NOOP") == 250
    assert raw.command(EHLO) == 250
    assert raw.command(b"DATA") == 503
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 250
    assert raw.command(b"MAIL FROM:<other@example.org>") == 503
    raw.close()

    pre = server.raw()
    pre.send(
        b"EHLO client.example.org\r\nMAIL FROM:<sender@example.org>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
    )
    assert pre.code() == 220
    assert pre.code() == 554
    assert pre.reply() == (0, [])
    assert server.spool.messages == []


def test_issue_030_smtputf8(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command("MAIL FROM:<josé@example.org>".encode()) == 553
    assert raw.command("MAIL FROM:<josé@example.org> SMTPUTF8".encode()) == 250
    assert raw.command("RCPT TO:<alice@bücher.test>".encode()) == 250
    assert raw.command(b"RCPT TO:<alice@xn--bcher-kva.test>") == 250
    assert raw.command("RCPT TO:<δοκιμή@example.test>".encode()) == 550
    assert raw.command(b"RCPT TO:<\xff\xfe@example.test>") == 501
    assert raw.command(b"DATA") == 354
    raw.send("Subject: Grüße\r\n\r\nok\r\n.\r\n".encode())
    assert raw.code() == 250
    ((envelope, data),) = server.spool.messages
    assert envelope.smtputf8
    assert b" with UTF8SMTP id " in data


def test_starttls_drops_injected_plaintext(server: Server) -> None:
    # case 003: the first reply inside TLS answers EHLO, not the RSET
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    raw.send(b"STARTTLS\r\nRSET\r\n")
    assert raw.code() == 220
    raw.start_tls()
    raw.send(EHLO + b"\r\n")
    code, lines = raw.reply()
    assert code == 250
    assert lines[0].startswith(b"250-mx.example.test")
    assert all(b"STARTTLS" not in line for line in lines)
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 250
    assert raw.command(b"RCPT TO:<alice@example.test>") == 250
    assert raw.command(b"DATA") == 354
    raw.send(b"Subject: tls\r\n\r\nx\r\n.\r\n")
    assert raw.code() == 250
    ((_, data),) = server.spool.messages
    assert b"(using TLSv1." in data
    assert b" with ESMTPS id " in data
    raw.close()


def test_starttls_with_smtplib_then_auth(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.starttls(context=_client_tls())
        client.login("alice", "alice-pass")
        client.sendmail(
            "alice@example.test", ["x@elsewhere.example"], b"Subject: a\r\n\r\nb\r\n"
        )
    ((envelope, data),) = server.spool.messages
    assert envelope.sasl_username == "alice"
    assert b" with ESMTPSA id " in data


def test_mail_before_ehlo_after_starttls_is_refused(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"STARTTLS") == 220
    raw.start_tls()
    assert raw.command(b"MAIL FROM:<sender@example.org>") == 503


def _client_tls():  # type: ignore[no-untyped-def]
    from roost.net import tls as net_tls

    return net_tls.client_context(verify=False)


def _plain(authzid: str, authcid: str, password: str) -> bytes:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())


def test_issue_015_auth_plain_cases(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"AUTH PLAIN " + _plain("bob", "", "alice-pass")) == 535
    assert raw.command(b"AUTH PLAIN " + _plain("bob", "alice", "alice-pass")) == 535
    one_nul = base64.b64encode(b"alice\0alice-pass")
    assert raw.command(b"AUTH PLAIN " + one_nul) in (501, 535)
    assert raw.command(b"AUTH PLAIN !!!not-base64!!!") == 501
    assert raw.command(b"AUTH PLAIN") == 334
    assert raw.command(b"*") == 501
    assert raw.command(b"NOOP") == 250
    assert raw.command(b"AUTH PLAIN " + _plain("alice", "alice", "alice-pass")) == 235
    assert raw.command(b"AUTH PLAIN " + _plain("", "alice", "alice-pass")) == 503


def test_auth_login(server: Server) -> None:
    raw = open_raw(server)
    assert raw.command(EHLO) == 250
    assert raw.command(b"AUTH LOGIN") == 334
    assert raw.command(base64.b64encode(b"alice")) == 334
    assert raw.command(base64.b64encode(b"alice-pass")) == 235


def test_submission_requires_auth(tmp_path: Path) -> None:
    srv = start_server(tmp_path, submission=True)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            code, text = client.mail("alice@example.test")
            assert code == 530
            client.login("alice", "alice-pass")
            assert client.mail("alice@example.test")[0] == 250
    finally:
        srv.stop()


def test_auth_needs_tls_off_loopback_is_not_offered_on_plain(tmp_path: Path) -> None:
    # on loopback AUTH is offered without TLS (dovecot's rule); the
    # EHLO reply after TLS still offers it
    srv = start_server(tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            assert client.has_extn("auth")
    finally:
        srv.stop()


def test_bad_commands_end_the_session(server: Server) -> None:
    raw = open_raw(server)
    for _ in range(19):
        assert raw.command(b"BOGUS") == 500
    raw.send(b"BOGUS\r\n")
    assert raw.code() == 500
    assert raw.code() == 421
    assert raw.reply() == (0, [])


def test_vrfy_help_rset_quit(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        assert client.verify("alice")[0] == 252
        assert client.docmd("HELP")[0] == 214
        assert client.rset()[0] == 250
        assert client.docmd("EXPN", "staff")[0] == 502


def test_implicit_tls_listener(tmp_path: Path) -> None:
    srv = start_server(tmp_path, submission=True, implicit_tls=True)
    try:
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, context=_client_tls()) as client:
            code, text = client.ehlo("c.example.org")
            assert code == 250
            assert b"STARTTLS" not in text
            client.login("bob", "bob-pass")
            client.sendmail("bob@example.test", ["alice@example.test"], b"x\r\n")
        ((envelope, _),) = srv.spool.messages
        assert envelope.sasl_username == "bob"
    finally:
        srv.stop()


def test_connection_count_limit(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path, mynetworks="192.0.2.0/24", smtpd_client_connection_count_limit="2"
    )
    try:
        open_raw(srv)
        open_raw(srv)
        third = srv.raw()
        code, lines = third.reply()
        assert code == 421
        assert lines[0].startswith(b"421 4.7.0 mx.example.test")
    finally:
        srv.stop()


def test_recipient_limit(tmp_path: Path) -> None:
    srv = start_server(tmp_path, smtpd_recipient_limit="2")
    try:
        raw = open_raw(srv)
        assert raw.command(EHLO) == 250
        assert raw.command(b"MAIL FROM:<s@example.org>") == 250
        assert raw.command(b"RCPT TO:<alice@example.test>") == 250
        assert raw.command(b"RCPT TO:<bob@example.test>") == 250
        raw.send(b"RCPT TO:<x@example.test>\r\n")
        code, lines = raw.reply()
        assert code == 452
        assert lines[0].startswith(b"452 4.5.3")
    finally:
        srv.stop()


def test_our_own_bug_is_451_and_the_session_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = start_server(tmp_path)

    class Broken:
        def resolve(self, address: str) -> list[str] | None:
            raise RuntimeError("bug in the resolver")

    srv.service.local_recipients = Broken()
    try:
        raw = open_raw(srv)
        assert raw.command(EHLO) == 250
        assert raw.command(b"MAIL FROM:<s@example.org>") == 250
        raw.send(b"RCPT TO:<a@example.test>\r\n")
        code, lines = raw.reply()
        assert lines == [b"451 4.3.0 Error: internal error\r\n"]
        assert raw.command(b"NOOP") == 250
    finally:
        srv.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].exc_info is not None
    assert "bug in the resolver" not in b"".join(lines).decode()


def test_idle_timeout_gets_421(tmp_path: Path) -> None:
    srv = start_server(tmp_path, smtpd_timeout="1s")
    try:
        raw = open_raw(srv)
        code, lines = raw.reply()  # sends nothing; the server gives up
        assert code == 421
        assert lines[0].startswith(b"421 4.4.2 mx.example.test")
        assert raw.reply() == (0, [])
    finally:
        srv.stop()


def test_repeated_recipient_verdict_is_remembered_briefly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same client, sender and recipient again within a second is
    decided from memory (no worker thread); later it is looked up anew,
    so a changed alias or user file takes effect."""
    srv = start_server(tmp_path)
    now = [1_800_000_000.0]
    monkeypatch.setattr(srv.service, "clock", lambda: now[0])
    lookups: list[str] = []
    resolve = srv.service.local_recipients.resolve

    def counting(address: str) -> list[str] | None:
        lookups.append(address)
        return resolve(address)

    monkeypatch.setattr(srv.service.local_recipients, "resolve", counting)
    try:
        raw = open_raw(srv)
        assert raw.command(EHLO) == 250
        for sender in (b"<a@example.org>", b"<a@example.org>", b"<b@example.org>"):
            assert raw.command(b"MAIL FROM:" + sender) == 250
            assert raw.command(b"RCPT TO:<alice@example.test>") == 250
            assert raw.command(b"RCPT TO:<nobody@example.test>") == 550
            assert raw.command(b"RSET") == 250
        assert lookups == ["alice@example.test", "nobody@example.test"] * 2
        now[0] += 1.5
        assert raw.command(b"MAIL FROM:<a@example.org>") == 250
        assert raw.command(b"RCPT TO:<nobody@example.test>") == 550
        assert lookups[-1] == "nobody@example.test"
        assert len(lookups) == 5
    finally:
        srv.stop()
