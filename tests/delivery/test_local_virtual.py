"""Virtual mailbox domains and virtual_alias_maps (postfix virtual(5))."""

from __future__ import annotations

import asyncio

import pytest

from roost.auth import UserDB
from roost.delivery.aliases import AliasTable
from roost.delivery.local import (
    LocalDelivery,
    LocalRecipients,
    UnknownRecipient,
)
from roost.delivery.virtual import VirtualAliases, parse, split_addresses
from roost.mailstore import maildir
from roost.queue import Envelope, Recipient
from tests.delivery.local_fixtures import FakeUsers, make_settings
from tests.queue.support import MESSAGE, envelope, make_rig

USERS = ("alice", "bob", "root", "carol@virt.test", "dave@virt.test")


def make_virtual(tmp_path, table: str = "", aliases: str = "", users=USERS):
    (tmp_path / "aliases").write_text(aliases)
    (tmp_path / "virtual").write_text(table)
    settings = make_settings(
        tmp_path,
        myorigin="example.test",
        virtual_mailbox_domains="virt.test, bücher-virt.test",
        virtual_alias_maps=f"hash:{tmp_path / 'virtual'}",
    )
    recipients = LocalRecipients(
        settings, FakeUsers(*users), AliasTable([tmp_path / "aliases"])
    )
    return settings, recipients, LocalDelivery(settings, recipients)


def targets(recipients, address):
    return sorted((t.kind, t.value) for t in recipients.expand(address))


# -- the table file -----------------------------------------------------------


def test_parse_virtual_table_format():
    parsed = parse(
        "# comment\n"
        "Info@Example.test   alice, bob@example.test\n"
        "sales@example.test  carol@virt.test\n"
        "   dave@virt.test,erin@example.org\n"
        "@catch.test\t\tbob\n"
        "user@bücher.test alice\n"
        "bare.test anything\n"
        '"odd one"@example.test "x y"@example.org\n'
        "info@example.test ignored\n"
        "lonely\n"
    )
    assert parsed.entries == {
        "info@example.test": ["alice", "bob@example.test"],
        "sales@example.test": ["carol@virt.test", "dave@virt.test", "erin@example.org"],
        "@catch.test": ["bob"],
        "user@xn--bcher-kva.test": ["alice"],
        "bare.test": ["anything"],
        '"odd one"@example.test': ['"x y"@example.org'],
    }
    assert parsed.errors == [
        "virtual:9: info@example.test: duplicate entry ignored",
        "virtual:10: lonely: no value",
    ]


def test_split_addresses_keeps_quoted_commas_and_spaces():
    assert split_addresses('a, b c,,"d, e"@x  f') == ["a", "b", "c", '"d, e"@x', "f"]


# -- virtual mailbox domains ---------------------------------------------------


def test_virtual_mailbox_users_are_name_at_domain(tmp_path):
    _, recipients, _ = make_virtual(tmp_path)
    assert recipients.resolve("carol@virt.test") == ["carol@virt.test"]
    assert recipients.resolve("Carol@VIRT.test.") == ["carol@virt.test"]
    assert recipients.resolve("carol+news@virt.test") == ["carol@virt.test"]
    # a local user is not visible in a virtual domain, nor the reverse
    with pytest.raises(UnknownRecipient):
        recipients.resolve("alice@virt.test")
    with pytest.raises(UnknownRecipient):
        recipients.resolve("carol@example.test")
    assert recipients.resolve("carol@elsewhere.example") is None


def test_virtual_domain_has_a_postmaster(tmp_path):
    # RFC 5321 4.5.1: postmaster must be accepted for every domain
    _, recipients, _ = make_virtual(tmp_path)
    assert recipients.resolve("postmaster@virt.test") == ["root"]
    assert recipients.resolve("abuse@virt.test") == ["root"]


def test_virtual_mailbox_domain_aliases_are_not_local_aliases(tmp_path):
    # alias_maps belong to mydestination only (postfix local(8) vs virtual(8))
    _, recipients, _ = make_virtual(tmp_path, aliases="team: alice\n")
    assert recipients.resolve("team@example.test") == ["alice"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("team@virt.test")


def test_virtual_user_with_idn_domain_written_either_way(tmp_path):
    users = ("ulla@bücher-virt.test",)
    _, recipients, _ = make_virtual(tmp_path, users=users)
    assert recipients.resolve("ulla@xn--bcher-virt-9db.test") == [
        "ulla@bücher-virt.test"
    ]
    assert recipients.resolve("ulla@BÜCHER-virt.test") == ["ulla@bücher-virt.test"]


def test_virtual_delivery_goes_to_domain_name_maildir(tmp_path):
    settings, _, delivery = make_virtual(tmp_path)
    env = Envelope(
        queue_id="ABCDEFGHJK",
        mail_from="ann@example.org",
        recipients=[Recipient("dave+x@virt.test")],
        arrival_time=1.0,
    )
    outcome = delivery.deliver(env, MESSAGE, "dave+x@virt.test")
    assert outcome.result.status == "sent"
    assert outcome.delivered_users == ("dave@virt.test",)
    box = settings.mailbox_directory / "virt.test" / "dave" / "Maildir"
    (stored,) = list((box / "new").iterdir())
    head = stored.read_bytes().split(b"\n", 2)
    assert head[:2] == [
        b"Return-Path: <ann@example.org>",
        b"Delivered-To: dave+x@virt.test",
    ]


def test_users_file_virtual_user(tmp_path):
    settings = make_settings(tmp_path, virtual_mailbox_domains="virt.test")
    (tmp_path / "aliases").write_text("")
    userdb = UserDB(tmp_path / "users")
    userdb.add("Erin@Virt.test", "pw-erin-1")
    recipients = LocalRecipients(settings, userdb)
    assert recipients.resolve("erin@virt.test") == ["erin@virt.test"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("erin@example.test")


# -- virtual_alias_maps ---------------------------------------------------------


def test_virtual_alias_exact_and_catch_all(tmp_path):
    table = (
        "sales@virt.test carol@virt.test, bob\n"
        "@virt.test dave@virt.test\n"
        "info@example.test alice@example.test, erin@example.org\n"
    )
    _, recipients, _ = make_virtual(tmp_path, table)
    # results are rewritten again, so the catch-all takes carol@virt.test
    # too (virtual(5): @domain catches every user without an entry)
    assert targets(recipients, "sales@virt.test") == [
        ("mailbox", "bob"),
        ("mailbox", "dave@virt.test"),
    ]
    assert recipients.resolve("anyone@virt.test") == ["dave@virt.test"]
    # the usual cure: map real users to themselves
    table += "carol@virt.test carol@virt.test\n"
    _, recipients, _ = make_virtual(tmp_path, table)
    assert targets(recipients, "sales@virt.test") == [
        ("mailbox", "bob"),
        ("mailbox", "carol@virt.test"),
    ]
    assert recipients.resolve("dave@virt.test") == ["dave@virt.test"]
    assert targets(recipients, "info@example.test") == [
        ("forward", "erin@example.org"),
        ("mailbox", "alice"),
    ]


def test_virtual_alias_bare_user_form_only_for_local_domains(tmp_path):
    table = "help alice\n"
    _, recipients, _ = make_virtual(tmp_path, table)
    assert recipients.resolve("help@example.test") == ["alice"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("help@virt.test")


def test_virtual_alias_extension_order_and_propagation(tmp_path):
    # virtual(5): user+foo@domain, user@domain, user+foo, user, @domain
    table = (
        "list+owner@virt.test bob\n"
        "list@virt.test carol@virt.test\n"
        "fwd@example.test erin@example.org\n"
    )
    _, recipients, _ = make_virtual(tmp_path, table)
    assert recipients.resolve("list+owner@virt.test") == ["bob"]
    assert recipients.resolve("list+news@virt.test") == ["carol@virt.test"]
    # the unmatched extension is carried to the result
    (target,) = recipients.expand("fwd+tag@example.test")
    assert (target.kind, target.value) == ("forward", "erin+tag@example.org")
    assert target.address == "fwd+tag@example.test"


def test_virtual_alias_at_otherdomain_keeps_the_user(tmp_path):
    table = "@old.test @virt.test\nold.test anything\n"
    _, recipients, _ = make_virtual(tmp_path, table)
    assert recipients.resolve("carol@old.test") == ["carol@virt.test"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("nobody@old.test")


def test_virtual_alias_domain_needs_its_domain_line(tmp_path):
    table = "known@alias.test alice\n"
    _, recipients, _ = make_virtual(tmp_path, table)
    assert recipients.resolve("known@alias.test") is None
    (tmp_path / "virtual").write_text(table + "alias.test anything\n")
    _, recipients, _ = make_virtual(tmp_path, table + "alias.test anything\n")
    assert recipients.resolve("known@alias.test") == ["alice"]
    assert recipients.is_our_domain("alias.test")
    with pytest.raises(UnknownRecipient):
        recipients.resolve("unknown@alias.test")


def test_virtual_alias_to_itself_keeps_a_copy(tmp_path):
    table = "carol@virt.test carol@virt.test, bob\n"
    _, recipients, _ = make_virtual(tmp_path, table)
    assert recipients.resolve("carol@virt.test") == ["bob", "carol@virt.test"]


def test_virtual_alias_loop_is_a_permanent_error(tmp_path):
    table = "a@virt.test b@virt.test\nb@virt.test a@virt.test\n"
    _, recipients, delivery = make_virtual(tmp_path, table)
    (target,) = recipients.expand("a@virt.test")
    assert (target.kind, target.dsn) == ("error", "5.4.6")
    env = Envelope(
        queue_id="ABCDEFGHJK",
        mail_from="ann@example.org",
        recipients=[Recipient("a@virt.test")],
        arrival_time=1.0,
    )
    outcome = delivery.deliver(env, MESSAGE, "a@virt.test")
    assert outcome.result.status == "bounced"
    assert "mail forwarding loop" in outcome.result.reason


def test_local_alias_to_virtual_address(tmp_path):
    _, recipients, _ = make_virtual(tmp_path, aliases="team: alice, dave@virt.test\n")
    assert recipients.resolve("team@example.test") == ["alice", "dave@virt.test"]


def test_virtual_alias_result_never_runs_a_command(tmp_path):
    # case 009: only alias_maps may name |commands and /files; a virtual
    # result is an address, so "|cmd" is looked up as a user and fails
    flag = tmp_path / "pwned"
    table = f'x@virt.test "|touch {flag}", {tmp_path}/file, bob\n'
    _, recipients, delivery = make_virtual(tmp_path, table)
    kinds = sorted(t.kind for t in recipients.expand("x@virt.test"))
    assert kinds == ["error", "error", "mailbox"]
    env = Envelope(
        queue_id="ABCDEFGHJK",
        mail_from="ann@example.org",
        recipients=[Recipient("x@virt.test")],
        arrival_time=1.0,
    )
    outcome = delivery.deliver(env, MESSAGE, "x@virt.test")
    assert outcome.delivered_users == ("bob",)
    assert not flag.exists()
    assert not (tmp_path / "file").exists()


def test_virtual_table_reloads_when_changed(tmp_path):
    virtual = VirtualAliases([tmp_path / "v"], "example.test", "+")
    (tmp_path / "v").write_text("a@virt.test bob\n")
    assert virtual.lookup("a", "virt.test", is_local_site=False) is not None
    (tmp_path / "v").write_text("a@virt.test bob\nc@virt.test bob\n")
    virtual.table.refresh(force=True)
    assert virtual.lookup("c", "virt.test", is_local_site=False) is not None


# -- through the queue ----------------------------------------------------------


def test_queue_forwards_virtual_alias_and_delivers_virtual_user(tmp_path):
    sent = []

    async def remote(env, data, rcpts):
        from roost.queue.result import RecipientResult

        sent.append((env.mail_from, [r.address for r in rcpts]))
        return [RecipientResult.sent(r.address, "250 ok", "mx") for r in rcpts]

    (tmp_path / "virtual").write_text(
        "team@virt.test carol@virt.test, ext@example.org\n"
    )
    rig = make_rig(
        tmp_path,
        users=("alice", "postmaster", "carol@virt.test"),
        remote=remote,
        virtual_mailbox_domains="virt.test",
        virtual_alias_maps=str(tmp_path / "virtual"),
    )

    async def flow():
        await rig.manager.start()
        try:
            env = envelope("team@virt.test", arrival=rig.clock.now)
            await rig.spool.enqueue(env, MESSAGE)
            await rig.manager.wait_idle()
        finally:
            await rig.manager.stop()

    asyncio.run(flow())
    (copy,) = rig.mailbox("carol@virt.test")
    assert b"Delivered-To: carol@virt.test\n" in copy
    assert sent == [("ann@example.org", ["ext@example.org"])]
    assert rig.spool.queue_ids() == []


def test_local_delivery_reports_virtual_domains_local(tmp_path):
    settings, recipients, delivery = make_virtual(tmp_path, "x.test anything\n")
    assert delivery.is_local("carol@virt.test")
    assert delivery.is_local("whoever@x.test")
    assert not delivery.is_local("carol@elsewhere.example")
    assert maildir.mailbox_path(settings.mailbox_directory, "carol@virt.test") == (
        settings.mailbox_directory / "virt.test" / "carol" / "Maildir"
    )
