"""The outbound SMTP/LMTP transport against real peers on loopback:
postfix's smtp-sink as the remote MTA, scripted fakes for odd replies,
and unbound for MX lookups."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from roost.config import Settings
from roost.delivery.dns import MxResolver
from roost.delivery.smtp import RemoteDelivery, SmtpTransport
from roost.delivery.transport import NextHop, parse_nexthop
from roost.queue.envelope import Envelope, Recipient
from roost.queue.result import RecipientResult
from tests.delivery.conftest import PostfixMta, SmtpSink, free_port
from tests.delivery.fakes import FakeSmtp, self_signed_server_context
from tests.support.dns_server import DnsServer

T = TypeVar("T")
MESSAGE = b"Received: by roost\r\nSubject: hello\r\n\r\nbody line\r\n.dot line\r\n"


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        # a hang (say, a client that does not pipeline against a
        # hold_until_data fake) fails the test instead of stalling it
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


def envelope(*recipients: str, **fields: object) -> Envelope:
    values: dict[str, object] = {
        "queue_id": "4QX7ZK2M",
        "mail_from": "ann@example.org",
        "arrival_time": time.time(),
    }
    values.update(fields)
    return Envelope(recipients=[Recipient(r) for r in recipients], **values)  # type: ignore[arg-type]


def hop(port: int, host: str = "127.0.0.1", transport: str = "smtp") -> NextHop:
    return parse_nexthop(transport, f"[{host}]:{port}", "")


async def deliver_once(
    settings: Settings,
    env: Envelope,
    nexthop: NextHop,
    data: bytes = MESSAGE,
    resolver: MxResolver | None = None,
) -> list[RecipientResult]:
    transport = SmtpTransport(settings, resolver=resolver, reply_timeout_s=10)
    try:
        return await transport.deliver(env, data, env.recipients, nexthop)
    finally:
        await transport.close()


async def with_fake(fake: FakeSmtp, body: Callable[[int], Awaitable[T]]) -> T:
    port = await fake.start()
    try:
        return await body(port)
    finally:
        await fake.close()


# A real remote MTA: smtp-sink


def test_sent_to_smtp_sink(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    sink = smtp_sink()
    env = envelope("bo@example.test", "cy@example.test")
    [bo, cy] = run(deliver_once(make_settings(), env, hop(sink.port)))
    assert (bo.status, bo.dsn) == ("sent", "2.0.0")
    assert bo.reason.startswith("250 2.0.0 Ok")
    assert bo.relay == f"127.0.0.1[127.0.0.1]:{sink.port}"
    assert cy.status == "sent"
    [captured] = sink.messages()
    assert b"X-Mail-Args: <ann@example.org>" in captured
    assert b"X-Rcpt-Args: <bo@example.test>" in captured
    assert b"X-Helo-Args: roost.example.org" in captured
    # dot-stuffed on the wire, unstuffed by the sink
    assert captured.endswith(b"body line\n.dot line\n\n")


@pytest.mark.parametrize(
    ("option", "status", "dsn", "command"),
    [
        ("-r", "deferred", "4.3.0", "RCPT TO"),
        ("-f", "bounced", "5.3.0", "RCPT TO"),
    ],
)
def test_sink_refusals_keep_the_remote_reply(
    smtp_sink: Callable[..., SmtpSink],
    make_settings: Callable[..., Settings],
    option: str,
    status: str,
    dsn: str,
    command: str,
) -> None:
    sink = smtp_sink(option, "RCPT")
    [result] = run(deliver_once(make_settings(), envelope("bo@x.test"), hop(sink.port)))
    assert (result.status, result.dsn) == (status, dsn)
    assert f"said: {dsn[0]}" in result.reason
    assert result.reason.endswith(f"(in reply to {command} command)")
    assert result.diagnostic.startswith(f"smtp; {dsn[0]}")
    assert result.remote_mta == "127.0.0.1"
    assert sink.messages() == []


def test_sink_without_8bitmime_gets_quoted_printable(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    # RFC 6152 3 / case 006: never 8-bit octets to a 7-bit peer
    sink = smtp_sink("-8")
    data = (
        b"Subject: x\r\nContent-Type: text/plain; charset=latin1\r\n\r\nd\xe9j\xe0\r\n"
    )
    [result] = run(
        deliver_once(make_settings(), envelope("bo@x.test"), hop(sink.port), data)
    )
    assert result.status == "sent"
    [captured] = sink.messages()
    assert b"d=E9j=E0" in captured
    assert b"Content-Transfer-Encoding: quoted-printable" in captured
    assert b"BODY=8BITMIME" not in captured


def test_sink_with_8bitmime_gets_octets_and_body_param(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    sink = smtp_sink()
    data = b"Subject: x\r\n\r\nd\xe9j\xe0\r\n"
    run(deliver_once(make_settings(), envelope("bo@x.test"), hop(sink.port), data))
    [captured] = sink.messages()
    assert b"X-Mail-Args: <ann@example.org> BODY=8BITMIME" in captured
    assert b"d\xe9j\xe0" in captured


def test_unconvertible_8bit_bounces_5_6_3(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    sink = smtp_sink("-8")
    data = b"Subject: caf\xe9\r\n\r\nbody\r\n"
    [result] = run(
        deliver_once(make_settings(), envelope("bo@x.test"), hop(sink.port), data)
    )
    assert (result.status, result.dsn) == ("bounced", "5.6.3")
    assert sink.messages() == []


def test_lmtp_to_sink(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    sink = smtp_sink("-L")
    env = envelope("a@x.test", "b@x.test")
    results = run(deliver_once(make_settings(), env, hop(sink.port, transport="lmtp")))
    assert [r.status for r in results] == ["sent", "sent"]
    [captured] = sink.messages()
    assert b"X-Client-Proto: LMTP" in captured


def test_connection_reuse_for_same_next_hop(
    smtp_sink: Callable[..., SmtpSink], make_settings: Callable[..., Settings]
) -> None:
    sink = smtp_sink()

    async def scenario() -> int:
        transport = SmtpTransport(make_settings())
        for index in range(3):
            env = envelope(f"r{index}@x.test", queue_id=f"Q{index}")
            [result] = await transport.deliver(
                env, MESSAGE, env.recipients, hop(sink.port)
            )
            assert result.status == "sent"
        await transport.close()
        return transport.sessions_opened

    assert run(scenario()) == 1
    assert len(sink.messages()) == 3


def test_mx_lookup_through_real_resolver(
    smtp_sink: Callable[..., SmtpSink],
    make_settings: Callable[..., Settings],
    dns_server: DnsServer,
) -> None:
    sink = smtp_sink()
    settings = make_settings(dns_resolver=dns_server.setting)
    nexthop = parse_nexthop("smtp", f"example.test:{sink.port}", "")
    env = envelope("bo@example.test")
    [result] = run(deliver_once(settings, env, nexthop, resolver=MxResolver(settings)))
    assert result.status == "sent"
    assert result.relay == f"mx1.example.test[127.0.0.1]:{sink.port}"


def test_log_line_in_postfix_form(
    smtp_sink: Callable[..., SmtpSink],
    make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = smtp_sink()
    caplog.set_level(logging.INFO, logger="roost.smtp")
    run(deliver_once(make_settings(), envelope("bo@x.test"), hop(sink.port)))
    lines = [r.getMessage() for r in caplog.records if r.name == "roost.smtp"]
    pattern = (
        r"4QX7ZK2M: to=<bo@x\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
        r"delay=[\d.]+, delays=[\d.]+/0/[\d.]+/[\d.]+, dsn=2\.0\.0, "
        r"status=sent \(250 2\.0\.0 Ok.*\)"
    )
    assert any(re.fullmatch(pattern, line) for line in lines), lines


# DNS outcomes become results


@pytest.mark.parametrize(
    ("domain", "status", "dsn"),
    [
        ("nullmx.example.test", "bounced", "5.1.10"),
        ("nope.example.test", "bounced", "5.1.2"),
        ("fail.test", "deferred", "4.4.3"),
    ],
)
def test_dns_failures(
    make_settings: Callable[..., Settings],
    dns_server: DnsServer,
    domain: str,
    status: str,
    dsn: str,
) -> None:
    settings = make_settings(dns_resolver=dns_server.setting)
    env = envelope(f"bo@{domain}")
    nexthop = parse_nexthop("smtp", "", domain)
    [result] = run(deliver_once(settings, env, nexthop, resolver=MxResolver(settings)))
    assert (result.status, result.dsn, result.relay) == (status, dsn, "none")


def test_mx_failover_to_next_host(
    make_settings: Callable[..., Settings], dns_server: DnsServer
) -> None:
    # failover.example.test: MX 10 down (127.0.0.2), MX 20 up (127.0.0.3)
    port = free_port("127.0.0.3")
    settings = make_settings(dns_resolver=dns_server.setting)
    fake = FakeSmtp()

    async def scenario() -> list[RecipientResult]:
        await fake.start("127.0.0.3", port)
        try:
            nexthop = parse_nexthop("smtp", f"failover.example.test:{port}", "")
            env = envelope("bo@failover.example.test")
            return await deliver_once(
                settings, env, nexthop, resolver=MxResolver(settings)
            )
        finally:
            await fake.close()

    [result] = run(scenario())
    assert result.status == "sent"
    assert result.relay == f"up.example.test[127.0.0.3]:{port}"


def test_all_hosts_down_defers_with_last_error(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    [result] = run(deliver_once(make_settings(), envelope("bo@x.test"), hop(port)))
    assert (result.status, result.dsn) == ("deferred", "4.4.1")
    assert result.reason.startswith(f"connect to 127.0.0.1[127.0.0.1]:{port}: ")
    assert result.relay == "none"


# Scripted peers for odd replies


def test_pipelining_sends_the_group_before_any_reply(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeSmtp(hold_until_data=True)
    env = envelope("a@x.test", "b@x.test")

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), env, hop(port))

    assert [r.status for r in run(with_fake(fake, body))] == ["sent", "sent"]


def test_ehlo_refused_uses_helo(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSmtp(replies={"EHLO": [b"502 5.5.1 EHLO not supported"]})

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    [result] = run(with_fake(fake, body))
    assert result.status == "sent"
    assert fake.sessions[0].commands[1] == b"HELO roost.example.org"
    # RFC 6152: no BODY= (nor any parameter) without EHLO
    assert fake.sessions[0].commands[2] == b"MAIL FROM:<ann@example.org>"


def test_mixed_recipient_replies(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSmtp(
        replies={
            "RCPT": [
                b"250 2.1.5 Ok",
                b"450 4.2.0 <b@x.test>: Recipient address rejected: Greylisted",
                b"550 5.1.1 <c@x.test>: Recipient address rejected: unknown",
            ]
        }
    )

    async def body(port: int) -> list[RecipientResult]:
        env = envelope("a@x.test", "b@x.test", "c@x.test")
        return await deliver_once(make_settings(), env, hop(port))

    a, b, c = run(with_fake(fake, body))
    assert (a.status, b.status, c.status) == ("sent", "deferred", "bounced")
    assert (b.dsn, c.dsn) == ("4.2.0", "5.1.1")
    assert "Greylisted (in reply to RCPT TO command)" in b.reason
    assert len(fake.messages) == 1


def test_greeting_421_tries_next_host(
    make_settings: Callable[..., Settings], dns_server: DnsServer
) -> None:
    port = free_port("127.0.0.3")
    busy = FakeSmtp(greeting=b"421 4.3.2 busy, try later")
    good = FakeSmtp()
    settings = make_settings(dns_resolver=dns_server.setting)

    async def scenario() -> list[RecipientResult]:
        await busy.start("127.0.0.2", port)
        await good.start("127.0.0.3", port)
        try:
            nexthop = parse_nexthop("smtp", f"failover.example.test:{port}", "")
            env = envelope("bo@failover.example.test")
            return await deliver_once(
                settings, env, nexthop, resolver=MxResolver(settings)
            )
        finally:
            await busy.close()
            await good.close()

    [result] = run(scenario())
    assert result.status == "sent"
    assert len(busy.sessions) == 1
    assert len(good.messages) == 1


def test_lost_connection_after_data_is_not_retried_elsewhere(
    make_settings: Callable[..., Settings], dns_server: DnsServer
) -> None:
    # the message may have arrived: another host would make a duplicate
    port = free_port("127.0.0.3")
    dropper = FakeSmtp(replies={".": [None]})
    other = FakeSmtp()
    settings = make_settings(dns_resolver=dns_server.setting)

    async def scenario() -> list[RecipientResult]:
        await dropper.start("127.0.0.2", port)
        await other.start("127.0.0.3", port)
        try:
            nexthop = parse_nexthop("smtp", f"failover.example.test:{port}", "")
            env = envelope("bo@failover.example.test")
            return await deliver_once(
                settings, env, nexthop, resolver=MxResolver(settings)
            )
        finally:
            await dropper.close()
            await other.close()

    [result] = run(scenario())
    assert (result.status, result.dsn) == ("deferred", "4.4.2")
    assert "while sending end of data" in result.reason
    assert other.sessions == []


def test_size_limit_of_peer_bounces_5_3_4(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeSmtp(ehlo=("PIPELINING", "SIZE 20"))

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    [result] = run(with_fake(fake, body))
    assert (result.status, result.dsn) == ("bounced", "5.3.4")  # RFC 1870 6.1
    assert not any(c.startswith(b"MAIL") for c in fake.sessions[0].commands)


def test_size_parameter_sent_when_offered(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeSmtp(ehlo=("SIZE 100000",))

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    run(with_fake(fake, body))
    assert f"SIZE={len(MESSAGE)}".encode() in fake.sessions[0].commands[1]


def test_smtputf8_only_when_needed_and_offered(
    make_settings: Callable[..., Settings],
) -> None:
    # case 030: UTF-8 sender to a peer without SMTPUTF8 bounces 5.6.7 and
    # no session carries it; ASCII mail flagged SMTPUTF8 goes without
    # the parameter; an IDN domain goes as its A-label.
    plain = FakeSmtp()

    async def body(port: int) -> tuple[list[RecipientResult], ...]:
        utf8 = envelope("bo@x.test", mail_from="josé@example.org", smtputf8=True)
        first = await deliver_once(make_settings(), utf8, hop(port))
        ascii_env = envelope("bo@bücher.example", smtputf8=True)
        second = await deliver_once(make_settings(), ascii_env, hop(port))
        local_utf8 = envelope("δοκιμή@x.test", "bo@x.test")
        third = await deliver_once(make_settings(), local_utf8, hop(port))
        return first, second, third

    first, second, third = run(with_fake(plain, body))
    assert (first[0].status, first[0].dsn) == ("bounced", "5.6.7")
    assert second[0].status == "sent"
    assert [r.dsn for r in third] == ["5.6.7", "2.0.0"]
    mails = [c for s in plain.sessions for c in s.commands if c.startswith(b"MAIL")]
    assert [m.split(b" SIZE=")[0] for m in mails] == [
        b"MAIL FROM:<ann@example.org>"
    ] * 2
    assert not any(b"SMTPUTF8" in m for m in mails)
    rcpts = [c for s in plain.sessions for c in s.commands if c.startswith(b"RCPT")]
    assert rcpts == [b"RCPT TO:<bo@xn--bcher-kva.example>", b"RCPT TO:<bo@x.test>"]

    capable = FakeSmtp(ehlo=("8BITMIME", "SMTPUTF8"))

    async def body2(port: int) -> list[RecipientResult]:
        utf8 = envelope("δοκιμή@x.test", mail_from="josé@example.org", smtputf8=True)
        return await deliver_once(make_settings(), utf8, hop(port))

    [result] = run(with_fake(capable, body2))
    assert result.status == "sent"
    commands = capable.sessions[0].commands
    assert commands[1] == "MAIL FROM:<josé@example.org> SMTPUTF8".encode()
    assert commands[2] == "RCPT TO:<δοκιμή@x.test>".encode()


def test_our_received_for_an_idn_domain_needs_no_smtputf8(
    make_settings: Callable[..., Settings],
) -> None:
    # case 030: smtpd's Received names the recipient as it came; for a
    # hop without SMTPUTF8 the domain goes as A-labels there too, while
    # a UTF-8 Subject of an SMTPUTF8 message still needs the extension
    received = (
        "Received: from c.example (c.example [192.0.2.9])\r\n"
        "\tby mx.example.test (Roost) with UTF8SMTP id 4QX7ZK2M\r\n"
        "\tfor <bo@bücher.example>; Fri, 04 Dec 2026 18:11:47 +0000\r\n"
    ).encode()
    plain = FakeSmtp()

    async def body(port: int) -> tuple[list[RecipientResult], ...]:
        env = envelope("bo@bücher.example", smtputf8=True)
        sent = await deliver_once(make_settings(), env, hop(port), received + MESSAGE)
        utf8_subject = received + "Subject: Grüße\r\n\r\nx\r\n".encode()
        env = envelope("bo@bücher.example", smtputf8=True)
        bounced = await deliver_once(make_settings(), env, hop(port), utf8_subject)
        return sent, bounced

    sent, bounced = run(with_fake(plain, body))
    assert sent[0].status == "sent"
    assert (bounced[0].status, bounced[0].dsn) == ("bounced", "5.6.7")
    session = plain.sessions[0]  # the bounce leaves before MAIL
    assert b"SMTPUTF8" not in session.commands[1]
    assert session.commands[2] == b"RCPT TO:<bo@xn--bcher-kva.example>"
    [data] = plain.messages
    assert b"\tfor <bo@xn--bcher-kva.example>; Fri" in data
    assert data.isascii()


def test_orcpt_of_idn_and_utf8_recipients(
    make_settings: Callable[..., Settings],
) -> None:
    # RFC 3461 4.2 ORCPT is xtext: an IDN domain as A-labels; a UTF-8
    # local part as RFC 6533 3 "utf-8" type, to an SMTPUTF8 peer only
    def env() -> Envelope:
        e = envelope("bo@x.test", "jo@x.test")
        e.recipients = [
            Recipient("bo@x.test", "rfc822;bo@bücher.example"),
            Recipient("jo@x.test", "rfc822;josé@x.test"),
        ]
        return e

    capable = FakeSmtp(ehlo=("DSN", "SMTPUTF8"))
    without = FakeSmtp(ehlo=("DSN",))

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), env(), hop(port))

    run(with_fake(capable, body))
    run(with_fake(without, body))
    assert capable.sessions[0].commands[2:4] == [
        b"RCPT TO:<bo@x.test> ORCPT=rfc822;bo@xn--bcher-kva.example",
        b"RCPT TO:<jo@x.test> ORCPT=utf-8;jos\\x{E9}@x.test",
    ]
    assert without.sessions[0].commands[2:4] == [
        b"RCPT TO:<bo@x.test> ORCPT=rfc822;bo@xn--bcher-kva.example",
        b"RCPT TO:<jo@x.test>",
    ]


def test_dsn_parameters_only_to_dsn_peers(
    make_settings: Callable[..., Settings],
) -> None:
    # RFC 3461 4-5: carried on when the next hop offers DSN
    def env() -> Envelope:
        e = envelope("bo@x.test", dsn_ret="hdrs", dsn_envid="id+1=x")
        e.recipients = [
            Recipient("bo@x.test", "rfc822;Bo+x@x.test", ("SUCCESS", "FAILURE"))
        ]
        return e

    with_dsn = FakeSmtp(ehlo=("DSN",))
    without = FakeSmtp(ehlo=("8BITMIME",))

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), env(), hop(port))

    run(with_fake(with_dsn, body))
    run(with_fake(without, body))
    assert with_dsn.sessions[0].commands[1:3] == [
        b"MAIL FROM:<ann@example.org> RET=HDRS ENVID=id+2B1+3Dx",
        b"RCPT TO:<bo@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bo+2Bx@x.test",
    ]
    assert without.sessions[0].commands[1:3] == [
        b"MAIL FROM:<ann@example.org>",
        b"RCPT TO:<bo@x.test>",
    ]


def test_lmtp_per_recipient_replies(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSmtp(
        lmtp=True, replies={".": [b"250 2.1.5 a ok", b"452 4.2.2 b over quota"]}
    )

    async def body(port: int) -> list[RecipientResult]:
        env = envelope("a@x.test", "b@x.test")
        return await deliver_once(make_settings(), env, hop(port, transport="lmtp"))

    a, b = run(with_fake(fake, body))
    assert (a.status, b.status, b.dsn) == ("sent", "deferred", "4.2.2")
    assert fake.sessions[0].commands[0] == b"LHLO roost.example.org"


def test_bind_address(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSmtp()

    async def body(port: int) -> list[RecipientResult]:
        settings = make_settings(smtp_bind_address="127.0.0.5")
        return await deliver_once(settings, envelope("a@x.test"), hop(port))

    run(with_fake(fake, body))
    assert fake.sessions[0].peer == "127.0.0.5"


def test_error_and_retry_transports(make_settings: Callable[..., Settings]) -> None:
    error = run(
        deliver_once(
            make_settings(), envelope("a@x.test"), NextHop("error", text="gone")
        )
    )
    retry = run(
        deliver_once(
            make_settings(), envelope("a@x.test"), NextHop("retry", text="later")
        )
    )
    assert (error[0].status, error[0].reason) == ("bounced", "gone")
    assert (retry[0].status, retry[0].dsn) == ("deferred", "4.0.0")


def test_concurrency_limit_per_destination(
    make_settings: Callable[..., Settings],
) -> None:
    # two sessions are held at end of data until both are there; with a
    # limit of 2 a third connection must never open meanwhile
    gate = asyncio.Event()
    waiting = 0

    async def hold() -> None:
        nonlocal waiting
        waiting += 1
        if waiting >= 2:
            gate.set()
        await gate.wait()

    fake = FakeSmtp(before_dot_reply=hold)
    settings = make_settings(default_destination_concurrency_limit="2")

    async def body(port: int) -> list[RecipientResult]:
        transport = SmtpTransport(settings)
        envs = [envelope(f"r{i}@x.test", queue_id=f"Q{i}") for i in range(6)]
        results = await asyncio.gather(
            *(transport.deliver(e, MESSAGE, e.recipients, hop(port)) for e in envs)
        )
        await transport.close()
        return [r for rs in results for r in rs]

    results = run(with_fake(fake, body))
    assert [r.status for r in results] == ["sent"] * 6
    assert fake.max_active == 2
    assert len(fake.messages) == 6


# STARTTLS


def test_opportunistic_starttls(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    context = self_signed_server_context(tmp_path)
    fake = FakeSmtp(ehlo=("PIPELINING", "STARTTLS"), tls=context)

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    [result] = run(with_fake(fake, body))
    assert result.status == "sent"
    session = fake.sessions[0]
    assert session.tls_at_mail == [True]
    # RFC 3207 4.2: EHLO again after the handshake
    assert [c for c in session.commands if c.startswith(b"EHLO")] == [
        b"EHLO roost.example.org",
        b"EHLO roost.example.org",
    ]


def test_may_without_starttls_is_plaintext(
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeSmtp()

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    assert run(with_fake(fake, body))[0].status == "sent"
    assert fake.sessions[0].tls_at_mail == [False]


def test_encrypt_requires_starttls(make_settings: Callable[..., Settings]) -> None:
    fake = FakeSmtp()

    async def body(port: int) -> list[RecipientResult]:
        settings = make_settings(smtp_tls_security_level="encrypt")
        return await deliver_once(settings, envelope("a@x.test"), hop(port))

    [result] = run(with_fake(fake, body))
    assert (result.status, result.dsn) == ("deferred", "4.7.4")
    assert fake.messages == []


def test_starttls_response_injection_is_refused(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    # CVE-2011-0411, client side: a reply smuggled in the clear after
    # the 220 must not be read as if it came over TLS
    context = self_signed_server_context(tmp_path)
    fake = FakeSmtp(
        ehlo=("STARTTLS",),
        tls=context,
        after_starttls=b"250-injected\r\n250 PIPELINING\r\n",
    )

    async def body(port: int) -> list[RecipientResult]:
        return await deliver_once(make_settings(), envelope("a@x.test"), hop(port))

    [result] = run(with_fake(fake, body))
    assert result.status == "deferred"
    assert "data after STARTTLS" in result.reason
    assert fake.messages == []


# Routing for the queue manager


def test_remote_delivery_splits_by_next_hop(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    one, two = FakeSmtp(), FakeSmtp()

    async def scenario() -> list[RecipientResult]:
        port_one = await one.start()
        port_two = await two.start()
        table = tmp_path / "transport"
        table.write_text(
            f"one.test smtp:[127.0.0.1]:{port_one}\n"
            f"two.test smtp:[127.0.0.1]:{port_two}\n"
            "gone.test error:no such domain here\n"
        )
        settings = make_settings(transport_maps=f"hash:{table}")
        remote = RemoteDelivery(settings)
        env = envelope("a@one.test", "b@two.test", "c@one.test", "d@gone.test")
        try:
            return await remote(env, MESSAGE, env.recipients)
        finally:
            await remote.close()
            await one.close()
            await two.close()

    results = run(scenario())
    assert [r.status for r in results] == ["sent", "sent", "sent", "bounced"]
    assert [r.address for r in results] == [
        "a@one.test",
        "b@two.test",
        "c@one.test",
        "d@gone.test",
    ]
    rcpts_one = [c for c in one.sessions[0].commands if c.startswith(b"RCPT")]
    assert rcpts_one == [b"RCPT TO:<a@one.test>", b"RCPT TO:<c@one.test>"]
    assert len(two.messages) == 1


# A real postfix as the remote MTA


def test_to_real_postfix_over_starttls(
    postfix_mta: PostfixMta, make_settings: Callable[..., Settings]
) -> None:
    data = (
        b"Received: from client by roost.example.org\r\n"
        b"Message-ID: <1@roost.example.org>\r\nDate: Fri, 4 Dec 2026 10:00:00 +0000\r\n"
        b"From: ann@example.org\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\n\r\n"
        b".leading dot\r\nd\xc3\xa9j\xc3\xa0 vu\r\n"
    )
    env = envelope("bo@example.test")
    [result] = run(deliver_once(make_settings(), env, hop(postfix_mta.port), data))
    assert result.status == "sent"
    queue_id = result.reason.rsplit(" ", 1)[-1]
    [stored] = postfix_mta.delivered("bo")
    # postfix stores LF lines and prepends its own headers: ours follow
    assert stored.endswith(data.replace(b"\r\n", b"\n"))
    log = postfix_mta.log()
    assert "Anonymous TLS connection established from localhost[127.0.0.1]" in log
    assert f"{queue_id}: to=<bo@example.test>" in log
    assert "ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1" in log


def test_stale_cached_session_falls_back_to_a_new_one(
    make_settings: Callable[..., Settings],
) -> None:
    # the peer drops the cached connection at the next MAIL: nothing was
    # sent yet, so the recipient goes over a fresh connection
    fake = FakeSmtp(replies={"MAIL": [b"250 2.1.0 Ok", None]})

    async def body(port: int) -> tuple[list[str], int]:
        transport = SmtpTransport(make_settings())
        statuses = []
        for index in range(2):
            env = envelope(f"r{index}@x.test", queue_id=f"Q{index}")
            [result] = await transport.deliver(env, MESSAGE, env.recipients, hop(port))
            statuses.append(result.status)
        await transport.close()
        return statuses, transport.sessions_opened

    statuses, opened = run(with_fake(fake, body))
    assert statuses == ["sent", "sent"]
    assert opened == 2
    assert len(fake.messages) == 2
