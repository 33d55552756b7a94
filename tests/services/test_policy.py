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


# sender ownership (issue 3: smtpd_sender_login_maps semantics) -------

OWNED = policy.Domains.of(
    ["127.0.0.0/8"],
    ["example.test", "bücher.test"],
    [],
    ["virt.test"],
    recipient_delimiter="+-",
)


def sender_verdict(
    sender: str,
    sasl: str,
    domains: policy.Domains = OWNED,
    rules: list[str] | None = None,
    *,
    login_check: bool = True,
    lookup: policy.Lookup | None = None,
) -> policy.Verdict:
    facts = Facts(client_ip=STRANGER, sasl_username=sasl, sender=sender)
    return policy.check_sender(
        rules or [], facts, domains, lookup, login_check=login_check
    )


@pytest.mark.parametrize(
    ("sender", "login"),
    [
        ("alice@example.test", "alice"),
        ("Alice@EXAMPLE.test", "alice"),
        ("alice+lists@example.test", "alice"),
        ("alice-x@example.test", "alice"),
        ("alice@xn--bcher-kva.test", "alice"),
        ("carol@virt.test", "carol@virt.test"),
        ("carol+tag@virt.test", "carol@virt.test"),
        ("", "alice"),  # the null sender is everyone's
    ],
)
def test_login_owns_its_own_addresses(sender: str, login: str) -> None:
    assert sender_verdict(sender, login).action is Action.PERMIT


@pytest.mark.parametrize(
    ("sender", "login"),
    [
        ("bob@example.test", "alice"),
        ("alice@elsewhere.example", "alice"),
        ("alice@virt.test", "alice"),
        ("carol@example.test", "carol@virt.test"),
        ("x+alice@example.test", "alice"),
        ('"alice@example.test"@elsewhere.example', "alice"),
    ],
)
def test_login_does_not_own_other_addresses(sender: str, login: str) -> None:
    verdict = sender_verdict(sender, login)
    assert verdict.action is Action.REJECT
    assert verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (553, "5.7.1")
    assert verdict.reply.lines[0] == (
        f"<{sender}>: Sender address rejected: not owned by user {login}"
    )
    assert verdict.restriction == "smtpd_sender_login_check"


def test_login_check_off_and_unauthenticated_clients() -> None:
    assert sender_verdict("bob@example.test", "alice", login_check=False).action is (
        Action.PERMIT
    )
    # without a login the implicit check has nothing to compare
    assert sender_verdict("bob@example.test", "").action is Action.PERMIT
    # the restriction named explicitly still applies with the check off
    rules = ["reject_authenticated_sender_login_mismatch"]
    verdict = sender_verdict(
        "bob@example.test", "alice", rules=rules, login_check=False
    )
    assert verdict.action is Action.REJECT


def test_sender_login_maps_table(tmp_path: Path) -> None:
    table = tmp_path / "senders"
    table.write_text(
        "# sender  login, login\n"
        "alice@example.test   alice, bob\n"
        "sales                alice\n"
        "@shared.example      carol dave\n"
    )
    domains = policy.Domains.of(
        ["127.0.0.0/8"],
        ["example.test"],
        [],
        recipient_delimiter="+",
        sender_login_maps=[f"hash:{table}"],
    )
    lookup = policy.AccessTables().lookup

    def action(sender: str, login: str, rules: list[str] | None = None) -> Action:
        verdict = sender_verdict(sender, login, domains, rules, lookup=lookup)
        return verdict.action

    assert action("alice@example.test", "bob") is Action.PERMIT
    assert action("alice+x@example.test", "ALICE") is Action.PERMIT
    # the table replaces the default rule: bob owns no bob@ here
    assert action("bob@example.test", "bob") is Action.REJECT
    # a bare local part key is for mydestination domains only
    assert action("sales@example.test", "alice") is Action.PERMIT
    assert action("sales@elsewhere.example", "alice") is Action.REJECT
    assert action("anyone@shared.example", "dave") is Action.PERMIT
    assert action("anyone@shared.example", "alice") is Action.REJECT

    # reject_sender_login_mismatch: an owned address needs its login
    rules = ["reject_sender_login_mismatch"]
    facts = Facts(client_ip=STRANGER, sender="sales@example.test")
    verdict = policy.check_sender(rules, facts, domains, lookup)
    assert verdict.reply is not None
    assert verdict.reply.lines[0] == (
        "<sales@example.test>: Sender address rejected: not logged in"
    )
    unowned = Facts(client_ip=STRANGER, sender="x@elsewhere.example")
    assert policy.check_sender(rules, unowned, domains, lookup).action is (
        Action.PERMIT
    )
    only_auth = ["reject_authenticated_sender_login_mismatch"]
    assert policy.check_sender(only_auth, facts, domains, lookup).action is (
        Action.PERMIT
    )


def test_recipient_checks_are_skipped_at_mail_from() -> None:
    facts = Facts(client_ip=STRANGER, sender="ann@elsewhere.example")
    rules = ["reject_unauth_destination", "reject_non_fqdn_recipient"]
    assert policy.check_sender(rules, facts, DOMAINS).action is Action.PERMIT


def test_virtual_alias_domains_are_auth_destinations() -> None:
    # LocalRecipients.is_our_domain knows the virtual alias domains
    domains = policy.Domains.of(
        ["127.0.0.0/8"], ["example.test"], [], is_ours=lambda d: d == "old.test"
    )
    facts = Facts(client_ip=STRANGER, recipient="carol@OLD.test")
    assert policy.check_recipient(STRICT_RELAY, [], facts, domains).action is (
        Action.PERMIT
    )
    assert policy.domain_to_look_up("carol@old.test", domains) is None
    stranger = Facts(client_ip=STRANGER, recipient="carol@new.test")
    assert policy.check_recipient(STRICT_RELAY, [], stranger, domains).action is (
        Action.REJECT
    )


Status = policy.DomainStatus


@pytest.mark.parametrize(
    ("status", "code", "enhanced", "text"),
    [
        (Status.NOT_FOUND, 550, "5.1.2", "Domain not found"),
        (Status.TEMPORARY, 450, "4.1.2", "Domain not found"),
        # RFC 7505 4.1 and RFC 3463 X.1.10
        (Status.NULL_MX, 556, "5.1.10", "Domain does not accept mail (nullMX)"),
    ],
)
def test_reject_unknown_recipient_domain(
    status: policy.DomainStatus, code: int, enhanced: str, text: str
) -> None:
    facts = Facts(
        client_ip="127.0.0.1",
        recipient="a@gone.example",
        recipient_domain_status=status,
    )
    verdict = policy.evaluate(["reject_unknown_recipient_domain"], facts, DOMAINS)
    assert verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (code, enhanced)
    expected = f"<a@gone.example>: Recipient address rejected: {text}"
    assert verdict.reply.lines[0] == expected


@pytest.mark.parametrize(
    ("status", "code", "enhanced"),
    [
        (Status.NOT_FOUND, 550, "5.1.8"),
        (Status.TEMPORARY, 450, "4.1.8"),
        # RFC 7505 4.2: 550 5.7.27 for a null MX sender domain
        (Status.NULL_MX, 550, "5.7.27"),
    ],
)
def test_reject_unknown_sender_domain(
    status: policy.DomainStatus, code: int, enhanced: str
) -> None:
    facts = Facts(
        client_ip="127.0.0.1", sender="a@gone.example", sender_domain_status=status
    )
    verdict = policy.evaluate(["reject_unknown_sender_domain"], facts, DOMAINS)
    assert verdict.reply is not None
    assert (verdict.reply.code, verdict.reply.enhanced) == (code, enhanced)
    assert verdict.reply.lines[0].startswith("<a@gone.example>: Sender address")


def test_unknown_domain_checks_pass_when_found_or_not_looked_up() -> None:
    rules = ["reject_unknown_sender_domain", "reject_unknown_recipient_domain"]
    for status in (Status.OK, None):
        facts = Facts(
            client_ip="127.0.0.1",
            sender="a@x.example",
            recipient="b@y.example",
            sender_domain_status=status,
            recipient_domain_status=status,
        )
        assert policy.evaluate(rules, facts, DOMAINS).action is Action.DUNNO
    null_sender = Facts(
        client_ip="127.0.0.1", sender="", sender_domain_status=Status.NOT_FOUND
    )
    assert policy.evaluate(rules[:1], null_sender, DOMAINS).action is Action.DUNNO
