"""Relay control and recipient restrictions as plain functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.services import policy
from roost.services.policy import Action, Facts

DOMAINS = policy.Domains.of(
    ["127.0.0.0/8", "[::1]/128", "192.0.2.0/24"],
    ["example.test", "bücher.test"],
    ["relay.example"],
)
DEFAULT_RELAY = [
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "defer_unauth_destination",
]
STRICT_RELAY = [
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "reject_unauth_destination",
]
STRANGER = "198.51.100.7"


def judge(
    recipient: str, *, ip: str = STRANGER, sasl: str = "", **kw: object
) -> policy.Verdict:
    facts = Facts(client_ip=ip, sasl_username=sasl, recipient=recipient, **kw)  # type: ignore[arg-type]
    return policy.check_recipient(STRICT_RELAY, [], facts, DOMAINS)


def test_local_and_relay_domains_are_auth_destinations() -> None:
    assert judge("alice@example.test").action is Action.PERMIT
    assert judge("alice@xn--bcher-kva.test").action is Action.PERMIT
    assert judge("alice@sub.relay.example").action is Action.PERMIT
    assert judge("postmaster").action is Action.PERMIT


@pytest.mark.parametrize(
    "recipient",
    [
        "victim@elsewhere.example",
        "victim%elsewhere.example@example.test",  # percent hack
        "elsewhere.example!victim@example.test",  # bang path
        '"victim@elsewhere.example"@example.test',  # quoted @
        "victim@[192.0.2.9]",  # address literal
        "victim@example.test.evil.example",
        "victim@notexample.test",
    ],
)
def test_open_relay_tricks_are_refused_for_strangers(recipient: str) -> None:
    verdict = judge(recipient)
    assert verdict.action is Action.REJECT
    assert verdict.reply is policy.RELAY_DENIED


def test_mynetworks_and_sasl_may_relay() -> None:
    assert judge("x@elsewhere.example", ip="192.0.2.44").action is Action.PERMIT
    assert judge("x@elsewhere.example", ip="::ffff:127.0.0.1").action is Action.PERMIT
    assert judge("x@elsewhere.example", ip="::1").action is Action.PERMIT
    assert judge("x@elsewhere.example", sasl="alice").action is Action.PERMIT


def test_default_relay_restrictions_defer() -> None:
    facts = Facts(client_ip=STRANGER, recipient="x@elsewhere.example")
    verdict = policy.check_recipient(DEFAULT_RELAY, [], facts, DOMAINS)
    assert verdict.reply is policy.RELAY_DEFERRED
    assert verdict.reply.code == 454


def test_unknown_local_user_after_restrictions() -> None:
    verdict = judge("nobody@example.test", is_unknown_local=True)
    assert verdict.reply is policy.UNKNOWN_USER
    # a stranger relaying through an unknown local name: relay refusal first
    verdict = judge("a%b@example.test", is_unknown_local=True)
    assert verdict.reply is policy.RELAY_DENIED


def test_no_relay_guard_is_still_no_open_relay() -> None:
    facts = Facts(client_ip=STRANGER, recipient="x@elsewhere.example")
    assert not policy.has_relay_guard([], ["permit_mynetworks"])
    verdict = policy.check_recipient([], ["permit_mynetworks"], facts, DOMAINS)
    assert verdict.action is Action.REJECT
    trusted = Facts(client_ip="127.0.0.1", recipient="x@elsewhere.example")
    assert policy.check_recipient([], [], trusted, DOMAINS).action is Action.PERMIT


def test_non_fqdn() -> None:
    facts = Facts(client_ip="127.0.0.1", sender="root@localhost", recipient="a@b")
    rules = ["reject_non_fqdn_sender", "reject_non_fqdn_recipient"]
    verdict = policy.evaluate(rules, facts, DOMAINS)
    assert verdict.reply is not None
    assert verdict.reply.code == 504
    assert "Sender address rejected" in verdict.reply.lines[0]
    null_sender = Facts(client_ip="127.0.0.1", sender="", recipient="a@b.example")
    assert policy.evaluate(rules, null_sender, DOMAINS).action is Action.DUNNO


def test_first_match_wins() -> None:
    facts = Facts(client_ip="127.0.0.1", recipient="x@elsewhere.example")
    assert policy.evaluate(["reject", "permit"], facts, DOMAINS).action is Action.REJECT
    assert policy.evaluate(["permit", "reject"], facts, DOMAINS).action is Action.PERMIT


def test_unknown_restriction_is_a_configuration_error() -> None:
    facts = Facts(client_ip="127.0.0.1", recipient="x@example.test")
    verdict = policy.evaluate(["reject_rbl_client", "zen.example"], facts, DOMAINS)
    assert verdict.reply is policy.CONFIG_ERROR


def test_access_tables(tmp_path: Path) -> None:
    table = tmp_path / "recipient_access"
    table.write_text(
        "# comment\n"
        "spam@example.test REJECT no thanks\n"
        "example.org 450 4.7.1 come back later\n"
        ".sub.example.net OK\n"
        "info@ DEFER\n"
    )
    tables = policy.AccessTables()
    spec = f"hash:{table}"

    def verdict(recipient: str) -> policy.Verdict:
        facts = Facts(client_ip=STRANGER, recipient=recipient)
        rules = ["check_recipient_access", spec]
        return policy.evaluate(rules, facts, DOMAINS, tables.lookup)

    refused = verdict("spam@example.test")
    assert refused.reply is not None
    assert (refused.reply.code, refused.reply.lines) == (554, ("no thanks",))
    later = verdict("x@example.org")
    assert later.reply is not None
    assert (later.reply.code, later.reply.enhanced) == (450, "4.7.1")
    assert verdict("x@a.sub.example.net").action is Action.PERMIT
    assert verdict("x@sub.example.net").action is Action.DUNNO
    assert verdict("info@anything.example").action is Action.REJECT
    assert verdict("bob@example.test").action is Action.DUNNO


def test_sender_access_null_sender(tmp_path: Path) -> None:
    table = tmp_path / "sender_access"
    table.write_text("<> REJECT no bounces here\n")
    facts = Facts(client_ip=STRANGER, sender="", recipient="a@example.test")
    rules = ["check_sender_access", f"texthash:{table}"]
    verdict = policy.evaluate(rules, facts, DOMAINS, policy.AccessTables().lookup)
    assert verdict.action is Action.REJECT
