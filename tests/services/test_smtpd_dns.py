"""smtpd with reject_unknown_sender_domain / reject_unknown_recipient_domain,
asking a real resolver on loopback (unbound with tests/support's zones)."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dns_server import DnsServer, running_resolver

from .smtpd_fixtures import Server, start_server


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    with running_resolver(tmp_path_factory.mktemp("unbound")) as server:
        yield server


@pytest.fixture
def checking(unbound: DnsServer, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        tmp_path,
        dns_resolver=unbound.setting,
        smtpd_sender_restrictions="reject_unknown_sender_domain",
        smtpd_recipient_restrictions="reject_unknown_recipient_domain",
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    ("sender", "code", "enhanced"),
    [
        ("ann@example.test", 250, b"2.1.0"),  # our own domain: not asked
        ("ann@implicit.example.test", 250, b"2.1.0"),
        ("ann@mxnx.example.test", 250, b"2.1.0"),
        ("", 250, b"2.1.0"),
        ("ann@[192.0.2.1]", 250, b"2.1.0"),
        ("ann@missing.example.test", 550, b"5.1.8"),
        ("ann@nodata.example.test", 550, b"5.1.8"),
        ("ann@nullmx.example.test", 550, b"5.7.27"),  # RFC 7505 4.2
        ("ann@host.fail.test", 450, b"4.1.8"),
    ],
)
def test_unknown_sender_domain(
    checking: Server, sender: str, code: int, enhanced: bytes
) -> None:
    with smtplib.SMTP("127.0.0.1", checking.port) as client:
        client.ehlo("c.example.org")
        got, text = client.mail(sender)
    assert (got, text.split()[0]) == (code, enhanced)
    if code != 250:
        assert f"<{sender}>: Sender address rejected: ".encode() in text


@pytest.mark.parametrize(
    ("recipient", "code", "enhanced"),
    [
        ("alice@example.test", 250, b"2.1.5"),
        ("friend@implicit.example.test", 250, b"2.1.5"),
        ("friend@alias.example.test", 250, b"2.1.5"),
        ("friend@missing.example.test", 550, b"5.1.2"),
        ("friend@nodata.example.test", 550, b"5.1.2"),
        ("friend@nullmx.example.test", 556, b"5.1.10"),  # RFC 7505 4.1
        ("friend@host.fail.test", 450, b"4.1.2"),
    ],
)
def test_unknown_recipient_domain(
    checking: Server, recipient: str, code: int, enhanced: bytes
) -> None:
    # the loopback client is in mynetworks: relaying is allowed, so the
    # domain check is what decides
    with smtplib.SMTP("127.0.0.1", checking.port) as client:
        client.ehlo("c.example.org")
        assert client.mail("ann@implicit.example.test")[0] == 250
        got, text = client.rcpt(recipient)
    assert (got, text.split()[0]) == (code, enhanced)
    if code != 250:
        assert f"<{recipient}>: Recipient address rejected: ".encode() in text


def test_sender_domain_in_recipient_restrictions(
    unbound: DnsServer, tmp_path: Path
) -> None:
    # a common postfix layout: the sender check among the RCPT checks
    srv = start_server(
        tmp_path,
        dns_resolver=unbound.setting,
        smtpd_recipient_restrictions="reject_unknown_sender_domain",
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            assert client.mail("ann@nullmx.example.test")[0] == 250
            code, text = client.rcpt("alice@example.test")
    finally:
        srv.stop()
    assert (code, text.split()[0]) == (550, b"5.7.27")
