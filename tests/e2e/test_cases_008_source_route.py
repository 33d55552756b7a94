"""Case 008: source routes in MAIL/RCPT.

RFC 5321 4.1.2: `Path = "<" [ A-d-l ":" ] Mailbox ">"`; the A-d-l MUST be
accepted, SHOULD be ignored. RFC 5321 4.1.1.3 / 3.6.1: relay policy looks
at the final mailbox's domain, never at a route hop. Malformed routes get
501. RFC 5321 6.1: the stripped reverse path is what bounces go to, so the
stored Return-Path has no route.

Here the client (127.0.0.1) is NOT in mynetworks and not authenticated.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server({"mynetworks": "192.0.2.0/24"})


def test_case_008_source_route_transcript(server: CaseServer) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    assert (
        smtp.cmd("MAIL FROM:<@hop1.example.org,@hop2.example.org:sender@example.org>")
        == 250
    )
    assert (
        smtp.cmd("RCPT TO:<@hop1.example.org,@hop2.example.org:alice@example.test>")
        == 250
    )
    # judged by the final domain: no relay through a local first hop
    assert smtp.cmd("RCPT TO:<@mx.example.test:victim@elsewhere.example>") in (
        450,
        454,
        554,
    )
    assert smtp.cmd("RCPT TO:<@hop1.example.org alice@example.test>") == 501
    assert smtp.cmd("RCPT TO:<@:alice@example.test>") == 501
    assert smtp.cmd("DATA") == 354
    smtp.send(b"Subject: route\r\n\r\nx\r\n.\r\n")
    assert smtp.code() == 250
    (path,) = server.wait_messages("alice", 1)
    stored = path.read_bytes()
    assert stored.startswith(b"Return-Path: <sender@example.org>\n")
    assert b"hop1.example.org" not in stored.split(b"\n\n", 1)[0].split(b"Received:")[0]
    assert server.queue_files() == []


@pytest.mark.parametrize(
    "path",
    [
        "<@hop1.example.org alice@example.test>",
        "<@:alice@example.test>",
        "<@hop1.example.org,alice@example.test>",
        "<@hop1.example.org,:alice@example.test>",
        "<@hop1.example.org,,@hop2.example.org:alice@example.test>",
        "<hop1.example.org:alice@example.test>",
        "<@hop1.example.org:>",
        "<@hop1.example.org:@hop2.example.org:alice@example.test>",
        "<@[300.1.1.1]:alice@example.test>",
        "<@-bad-.example.org:alice@example.test>",
    ],
)
def test_case_008_malformed_routes_get_501(server: CaseServer, path: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    assert smtp.cmd(f"RCPT TO:{path}") == 501
    assert smtp.cmd(f"MAIL FROM:{path}") == 503  # nested MAIL still refused
    assert smtp.cmd("RSET") == 250
    assert smtp.cmd(f"MAIL FROM:{path}") == 501


@pytest.mark.parametrize(
    "path",
    [
        "<@mx.example.test:victim@elsewhere.example>",
        "<@example.test,@localhost:victim@elsewhere.example>",
        "<@localhost:victim@elsewhere.example>",
        '<@example.test:"victim@elsewhere.example"@example.test>',
    ],
)
def test_case_008_no_relay_via_route(server: CaseServer, path: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd("MAIL FROM:<sender@example.org>") == 250
    code = smtp.cmd(f"RCPT TO:{path}")
    # relay denied (postfix: 454 defer or 554); the quoted form is local
    # to example.test and merely unknown there
    assert code in (450, 454, 550, 554), code
    assert smtp.cmd("DATA") in (503, 554)
    assert server.queue_files() == []
