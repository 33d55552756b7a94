"""Issue 3 proof: never an open relay, and submission with AUTH.

The client is kept outside mynetworks by setting mynetworks to a
network that does not hold 127.0.0.1 (192.0.2.0/24, TEST-NET-1: only a
configuration value, no packet goes there). relayhost points at a
scripted server on loopback, so any message Roost did relay would be
caught there; the tests assert it never gets a connection from a
stranger and does get the authenticated user's mail.
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import RoostServer
from tests.e2e.mta_support import ScriptedSmtp, scripted_smtp

pytestmark = pytest.mark.timeout(300)

OUTSIDE = "192.0.2.0/24"

# Each address tries to get mail for elsewhere.example relayed through
# Roost, whose only domain is example.test (RFC 5321 3.6.1, 4.1.2,
# postfix's reject_unauth_destination and its "sender-specified
# routing" checks; cases 007 and 008).
OPEN_RELAY_TRICKS = [
    "victim@elsewhere.example",
    # the % hack: local part routed on by the local domain
    "victim%elsewhere.example@example.test",
    "victim%elsewhere.example",
    "@example.test:victim%elsewhere.example@example.test",
    # source routes through us (RFC 5321 4.1.1.3: judge the final domain)
    "@example.test:victim@elsewhere.example",
    "@mx.example.test,@example.test:victim@elsewhere.example",
    # user@remote@local, bare and quoted
    "victim@elsewhere.example@example.test",
    '"victim@elsewhere.example"@example.test',
    '"victim@elsewhere.example"',
    '"victim%elsewhere.example"@example.test',
    "victim\\@elsewhere.example@example.test",
    # bang paths (UUCP)
    "elsewhere.example!victim@example.test",
    "elsewhere.example!victim",
    '"elsewhere.example!victim"@example.test',
    # trailing dots and look-alike domains
    "victim@elsewhere.example.",
    "victim@elsewhere.example..",
    "victim@example.test.elsewhere.example",
    "victim@elsewhere.example.example.test",
    "victim@elsewhere.example%example.test",
    # address literals
    "victim@[192.0.2.1]",
    "victim@[IPv6:2001:db8::1]",
    "victim@[192.0.2.1].",
]


@pytest.fixture
def capture() -> Iterator[ScriptedSmtp]:
    with scripted_smtp() as server:
        yield server


@pytest.fixture
def stranger_view(
    roost_factory: Callable[..., RoostServer], capture: ScriptedSmtp
) -> RoostServer:
    """Roost for which the loopback client is a stranger."""
    return roost_factory(
        mynetworks=OUTSIDE,
        relayhost=f"[127.0.0.1]:{capture.port}",
    )


def unverified() -> ssl.SSLContext:
    # the server's certificate is self-signed: encryption is what we test
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# smtpd hangs up after too many errors in one session (postfix's
# smtpd_hard_error_limit is 20), so the list is sent in small batches
BATCH = 8


def batches(items: list[str]) -> list[list[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def test_open_relay_tricks_are_refused_from_outside(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    server = stranger_view
    accepted = {}
    tokens = []
    for batch in batches(OPEN_RELAY_TRICKS):
        token = uuid.uuid4().hex
        tokens.append(token)
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
            client.ehlo("client.elsewhere.example")
            # a local sender address earns a stranger nothing
            assert client.mail("alice@example.test")[0] == 250
            for address in batch:
                code, reply = client.rcpt(address)
                if code < 400:
                    accepted[address] = (code, reply)
            # the control: local mail is still accepted
            assert client.rcpt("alice@example.test")[0] == 250
            code, _ = client.data(f"Subject: {token}\r\n\r\nprobe\r\n".encode())
            assert code == 250

    assert accepted == {}
    for token in tokens:
        server.wait_for_text("alice", token.encode())
    server.wait_queue_empty()
    assert capture.sessions == []


def test_open_relay_tricks_one_per_transaction(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    """Each trick alone in its own transaction, with the null sender."""
    server = stranger_view
    accepted = []
    for batch in batches(OPEN_RELAY_TRICKS):
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
            client.ehlo("client.elsewhere.example")
            for address in batch:
                assert client.mail("<>")[0] == 250
                if client.rcpt(address)[0] < 400:
                    accepted.append(address)
                client.rset()
    assert accepted == []
    server.wait_queue_empty()
    assert capture.sessions == []


def test_inside_mynetworks_the_same_client_may_relay(
    roost_factory: Callable[..., RoostServer], capture: ScriptedSmtp
) -> None:
    """The control for the tests above: they would see a relay."""
    server = roost_factory(relayhost=f"[127.0.0.1]:{capture.port}")
    token = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        data = f"Subject: {token}\r\n\r\nrelayed\r\n"
        client.sendmail("alice@example.test", ["victim@elsewhere.example"], data)
    [(_, rcpts, _)] = capture.wait_messages(1)
    assert rcpts == ["TO:<victim@elsewhere.example>"]


def test_submission_without_auth_may_not_relay(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    server = stranger_view
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.starttls(context=unverified())
        client.ehlo("client.elsewhere.example")
        # refused at MAIL (530 5.7.0 authentication required) or at RCPT
        code, _ = client.mail("alice@example.test")
        if code == 250:
            code, _ = client.rcpt("victim@elsewhere.example")
        assert code >= 400
    assert capture.sessions == []


def _relay_as_alice(client: smtplib.SMTP, token: str) -> None:
    client.login("alice", "alice-secret")
    data = f"From: alice@example.test\r\nSubject: {token}\r\n\r\nhi\r\n"
    refused = client.sendmail("alice@example.test", ["friend@elsewhere.example"], data)
    assert refused == {}


def test_submission_587_starttls_auth_relays(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    server = stranger_view
    token = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.ehlo("client.elsewhere.example")
        assert client.has_extn("starttls")
        client.starttls(context=unverified())
        client.ehlo("client.elsewhere.example")
        assert "PLAIN" in client.esmtp_features.get("auth", "").upper()
        _relay_as_alice(client, token)
    [(sender, rcpts, data)] = capture.wait_messages(1)
    assert "<alice@example.test>" in sender
    assert rcpts == ["TO:<friend@elsewhere.example>"]
    assert token.encode() in data
    assert "sasl_username=alice" in server.log_text()


def test_submission_465_implicit_tls_auth_relays(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    server = stranger_view
    token = uuid.uuid4().hex
    port = server.port("smtps")
    with smtplib.SMTP_SSL(
        "127.0.0.1", port, timeout=30, context=unverified()
    ) as client:
        client.ehlo("client.elsewhere.example")
        _relay_as_alice(client, token)
    [(_, rcpts, data)] = capture.wait_messages(1)
    assert rcpts == ["TO:<friend@elsewhere.example>"]
    assert token.encode() in data


def test_submission_bad_password_is_refused(stranger_view: RoostServer) -> None:
    server = stranger_view
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.starttls(context=unverified())
        client.ehlo("client.elsewhere.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("alice", "not-her-password")
        assert refused.value.smtp_code == 535
        # and unauthenticated it still may not relay
        code, _ = client.mail("alice@example.test")
        if code == 250:
            code, _ = client.rcpt("victim@elsewhere.example")
        assert code >= 400


def test_submission_sender_must_belong_to_the_login(
    stranger_view: RoostServer, capture: ScriptedSmtp
) -> None:
    # postfix reject_sender_login_mismatch: 553 5.7.1 "Sender address
    # rejected: not owned by user alice"
    server = stranger_view
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=30) as client:
        client.starttls(context=unverified())
        client.ehlo("client.elsewhere.example")
        client.login("alice", "alice-secret")
        code, _ = client.mail("bob@example.test")
        assert 500 <= code < 600
        client.rset()
        assert client.mail("alice@example.test")[0] == 250
    assert capture.sessions == []
