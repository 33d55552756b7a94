"""Issue 3 proof: Roost as a real MTA between a real postfix, a real DNS
server (unbound) and scripted remote servers, all on 127.0.0.1.

Roost runs as `roost -c DIR serve` (tests/conftest.py's roost_factory);
its dns_resolver is the unbound of tests/support/dns_server.py serving
the `mta.test` zone, and transport_maps give each test domain a port
(`smtp:domain:port` still looks the domain's MX up, postfix's nexthop
syntax), since every MX host is 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import RoostServer, poll
from tests.e2e.mta_support import (
    MTA_ZONE,
    free_port,
    running_postfix,
    scripted_smtp,
    wait_log,
)
from tests.support.dns_server import TEST_ZONES, DnsServer, running_resolver

pytestmark = pytest.mark.timeout(300)

Factory = Callable[..., RoostServer]


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    directory = tmp_path_factory.mktemp("unbound")
    # the fixture's readiness probe asks for example.test: keep its zone
    zones = {**TEST_ZONES, "mta.test": MTA_ZONE}
    with running_resolver(directory, zones) as server:
        yield server


def mta_config(
    directory: Path, dns: DnsServer, routes: dict[str, int], **extra: str
) -> dict[str, str]:
    """Roost settings: our resolver, one port per domain, no relayhost."""
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "transport"
    table.write_text("".join(f"{d} smtp:{d}:{p}\n" for d, p in routes.items()))
    config = {
        "relayhost": "",
        "dns_resolver": dns.setting,
        "transport_maps": f"texthash:{table}",
        "smtp_connect_timeout": "5s",
    }
    config.update(extra)
    return config


def message(token: str, sender: str = "alice@example.test") -> bytes:
    return (
        f"From: {sender}\r\nTo: someone@example.org\r\nSubject: {token}\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{token}@example.test>\r\n\r\n"
        ".a line that starts with a dot\r\n"
        f"{'x' * 900}\r\n"
        f"body {token}\r\n"
    ).encode()


def token() -> str:
    return uuid.uuid4().hex


def send(port: int, sender: str, recipients: list[str], data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(sender, recipients, data)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def dsn_fields(raw: bytes) -> tuple[Message, list[Message]]:
    """The DSN and its per-message/per-recipient field groups."""
    report = parse(raw)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = report.get_payload()
    assert isinstance(parts, list)
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    groups = status.get_payload()
    assert isinstance(groups, list)
    return report, groups


# -- Roost <-> postfix --------------------------------------------------------


def test_roost_relays_to_postfix_by_mx_over_starttls(
    roost_factory: Factory, dns: DnsServer, tmp_path: Path
) -> None:
    with running_postfix(virtual_domain="remote.mta.test", users=("bo",)) as pf:
        routes = {"remote.mta.test": pf.port}
        server = roost_factory(**mta_config(tmp_path / "cfg", dns, routes))
        tok = token()
        data = message(tok)
        # 127.0.0.1 is in Roost's mynetworks: it may relay
        send(server.port("smtp"), "alice@example.test", ["bo@remote.mta.test"], data)

        [stored] = pf.wait_messages("bo", 1)
        # postfix stores LF lines and adds its headers above Roost's
        assert stored.endswith(data.replace(b"\r\n", b"\n")), stored.decode()
        assert b"by mx.example.test" in stored
        pf.wait_log(r"TLS connection established from \S+\[127\.0\.0\.1\]")
        # the MX host, not the domain (which has no address), was used
        relay = rf"relay=mx\.remote\.mta\.test\[127\.0\.0\.1\]:{pf.port}"
        wait_log(server.log_text, rf"to=<bo@remote\.mta\.test>, {relay},.*status=sent")
        server.wait_queue_empty()


def test_postfix_relays_to_roost_maildirs_over_starttls(
    roost_factory: Factory,
) -> None:
    server = roost_factory(virtual_mailbox_domains="virt.test")
    server.cli("roost", "user", "add", "carol@virt.test", input="carol-secret-1\n")
    port = server.port("smtp")
    relay = {"example.test": port, "virt.test": port}
    with running_postfix(
        virtual_domain="remote.mta.test", users=("bo",), relay=relay
    ) as pf:
        tok = token()
        data = message(tok, "bo@remote.mta.test")
        rcpts = ["alice@example.test", "carol@virt.test"]
        send(pf.port, "bo@remote.mta.test", rcpts, data)

        stored = server.wait_for_text("alice", tok.encode())
        assert stored.endswith(data.replace(b"\r\n", b"\n"))
        assert b"Return-Path: <bo@remote.mta.test>\n" in stored
        carol = server.data_dir / "mail" / "virt.test" / "carol" / "Maildir"
        poll(
            lambda: any((carol / "new").glob("*")),
            60,
            "carol@virt.test's copy",
        )
        [copy] = list((carol / "new").iterdir())
        assert copy.read_bytes().endswith(data.replace(b"\r\n", b"\n"))
        pf.wait_log(
            rf"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}"
        )
        pf.wait_log(r"to=<carol@virt\.test>, relay=127\.0\.0\.1.*status=sent")

        # an unknown Roost user is refused at RCPT: postfix bounces to bo
        send(pf.port, "bo@remote.mta.test", ["nobody@example.test"], data)
        pf.wait_log(r"to=<nobody@example\.test>.*status=bounced")
        [dsn] = pf.wait_messages("bo", 1)
        assert b"nobody@example.test" in dsn
        assert b"550" in dsn


# -- retries, bounces, queue control ------------------------------------------


@pytest.mark.parametrize(("verb", "label"), [("RCPT", "at RCPT"), (".", "after DATA")])
def test_4xx_then_2xx_is_retried_and_delivered_once(
    roost_factory: Factory, dns: DnsServer, tmp_path: Path, verb: str, label: str
) -> None:
    replies = {verb: [b"451 4.3.0 try again later, please"]}
    with scripted_smtp(replies=replies) as remote:
        routes = {"scripted.mta.test": remote.port}
        server = roost_factory(**mta_config(tmp_path / "cfg", dns, routes))
        tok = token()
        send(
            server.port("smtp"),
            "alice@example.test",
            ["x@scripted.mta.test"],
            message(tok),
        )

        deferred = r"to=<x@scripted\.mta\.test>.*status=deferred \(.*try again later"
        wait_log(server.log_text, deferred)
        assert remote.messages() == []
        # skip the backoff wait, as an admin would
        server.cli("postqueue", "-f")
        [(sender, rcpts, data)] = remote.wait_messages(1)
        server.wait_queue_empty()
        assert sender.startswith("FROM:<alice@example.test>")
        assert rcpts == ["TO:<x@scripted.mta.test>"]
        assert f"body {tok}".encode() in data
        # once: a second flush sends nothing more
        server.cli("postqueue", "-f")
        wait_log(server.log_text, r"to=<x@scripted\.mta\.test>.*status=sent")
        assert len(remote.messages()) == 1, label


def test_5xx_gives_one_dsn_with_the_remote_reply(
    roost_factory: Factory, dns: DnsServer, tmp_path: Path
) -> None:
    reject = b"550 5.1.1 <gone@scripted.mta.test>: mailbox unknown here"
    rules = [("RCPT", "gone@", reject)]
    with scripted_smtp(rules=rules) as remote:
        routes = {"scripted.mta.test": remote.port}
        server = roost_factory(**mta_config(tmp_path / "cfg", dns, routes))
        tok = token()
        rcpts = ["gone@scripted.mta.test", "here@scripted.mta.test"]
        send(server.port("smtp"), "alice@example.test", rcpts, message(tok))

        [(_, accepted, _)] = remote.wait_messages(1)
        assert accepted == ["TO:<here@scripted.mta.test>"]
        server.wait_queue_empty()
        [raw] = server.wait_delivered("alice", 1)
        dsn = raw.read_bytes()
        report, groups = dsn_fields(dsn)
        assert b"Return-Path: <>\n" in dsn  # RFC 3464/5321 6.1: null sender
        recipients = [g for g in groups if g.get("Final-Recipient")]
        assert len(recipients) == 1
        [failed] = recipients
        assert failed["Final-Recipient"] == "rfc822; gone@scripted.mta.test"
        assert failed["Action"] == "failed"
        assert failed["Status"] == "5.1.1"
        diagnostic = " ".join(failed["Diagnostic-Code"].split())
        assert diagnostic.startswith("smtp; 550 5.1.1")
        assert "mailbox unknown here" in diagnostic
        assert "mx.scripted.mta.test" in failed.get("Remote-MTA", "")
        # the original headers come back (RET default: headers)
        assert f"Subject: {tok}".encode() in dsn
        assert len(server.messages("alice")) == 1


def test_remote_down_past_lifetime_bounces(
    roost_factory: Factory, dns: DnsServer, tmp_path: Path
) -> None:
    closed = free_port()
    routes = {"down.mta.test": closed}
    config = mta_config(
        tmp_path / "cfg",
        dns,
        routes,
        maximal_queue_lifetime="2s",
        minimal_backoff_time="1s",
        maximal_backoff_time="1s",
        queue_run_delay="1s",
    )
    server = roost_factory(**config)
    tok = token()
    send(server.port("smtp"), "alice@example.test", ["x@down.mta.test"], message(tok))

    wait_log(server.log_text, r"to=<x@down\.mta\.test>.*status=deferred")
    wait_log(
        server.log_text,
        r"from=<alice@example\.test>, status=expired, returned to sender",
    )
    server.wait_queue_empty()
    [raw] = server.wait_delivered("alice", 1)
    report, groups = dsn_fields(raw.read_bytes())
    [failed] = [g for g in groups if g.get("Final-Recipient")]
    assert failed["Final-Recipient"] == "rfc822; x@down.mta.test"
    assert failed["Action"] == "failed"
    # the last temporary error, made final by the lifetime (4.4.1 no answer)
    assert failed["Status"].startswith("4.")
    assert len(server.messages("alice")) == 1


def test_remote_down_then_up_and_flushed(
    roost_factory: Factory, dns: DnsServer, tmp_path: Path
) -> None:
    port = free_port()
    routes = {"scripted.mta.test": port}
    server = roost_factory(**mta_config(tmp_path / "cfg", dns, routes))
    tok = token()
    send(
        server.port("smtp"), "alice@example.test", ["y@scripted.mta.test"], message(tok)
    )
    wait_log(server.log_text, r"to=<y@scripted\.mta\.test>.*status=deferred")
    mailq = server.cli("postqueue", "-p").stdout
    assert "y@scripted.mta.test" in mailq

    with scripted_smtp(port=port) as remote:
        server.cli("postqueue", "-f")
        [(_, rcpts, data)] = remote.wait_messages(1)
        assert rcpts == ["TO:<y@scripted.mta.test>"]
        assert f"body {tok}".encode() in data
        server.wait_queue_empty()
    assert server.messages("alice") == []  # no bounce, no delay notice
    assert re.search(r"to=<y@scripted\.mta\.test>.*status=sent", server.log_text())
