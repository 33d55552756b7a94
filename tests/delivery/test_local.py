import os
import stat
from pathlib import Path

import pytest

from roost.delivery.local import (
    UnknownRecipient,
    canonical_domain,
    delivered_copy,
    find_copy,
    has_delivered_to,
)
from roost.mailstore import maildir
from roost.queue import Envelope, Recipient
from tests.delivery.local_fixtures import make_local

MESSAGE = b"From: ann@example.org\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n"


def envelope(rcpt: str, sender: str = "ann@example.org") -> Envelope:
    return Envelope(
        queue_id="ABCDEFGHJK",
        mail_from=sender,
        recipients=[Recipient(rcpt)],
        arrival_time=1.0,
    )


def mailbox_files(settings, user: str) -> list[Path]:
    box = maildir.mailbox_path(settings.mailbox_directory, user)
    return sorted((box / "new").iterdir()) + sorted((box / "cur").iterdir())


# -- resolve ------------------------------------------------------------------


def test_resolve_local_user_and_domains_case_insensitive(tmp_path):
    _, recipients, _ = make_local(tmp_path)
    assert recipients.resolve("alice@example.test") == ["alice"]
    assert recipients.resolve("Alice@EXAMPLE.Test") == ["alice"]
    assert recipients.resolve("alice@example.test.") == ["alice"]
    assert recipients.resolve("alice@elsewhere.example") is None


def test_resolve_recipient_delimiter(tmp_path):
    _, recipients, _ = make_local(tmp_path)
    assert recipients.resolve("alice+lists@example.test") == ["alice"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("+x@example.test")


def test_unknown_local_user_raises(tmp_path):
    _, recipients, _ = make_local(tmp_path)
    with pytest.raises(UnknownRecipient):
        recipients.resolve("nobody@example.test")


def test_case_030_idn_domain_u_and_a_label_are_one(tmp_path):
    # RFC 5890/5891: compare domains after IDNA conversion
    _, recipients, _ = make_local(tmp_path)
    assert canonical_domain("BÜCHER.test") == "xn--bcher-kva.test"
    assert recipients.resolve("alice@bücher.test") == ["alice"]
    assert recipients.resolve("alice@xn--bcher-kva.test") == ["alice"]
    with pytest.raises(UnknownRecipient):
        recipients.resolve("δοκιμή@example.test")


def test_postmaster_and_abuse_always_exist(tmp_path):
    _, recipients, _ = make_local(tmp_path, users=("alice", "root"))
    assert recipients.resolve("postmaster@example.test") == ["root"]
    assert recipients.resolve("Abuse@example.test") == ["root"]
    _, recipients, _ = make_local(tmp_path, users=("alice",))
    assert recipients.resolve("postmaster@example.test") == ["postmaster"]
    _, recipients, _ = make_local(tmp_path, "root: alice\n", users=("alice",))
    assert recipients.resolve("postmaster@example.test") == ["alice"]


def test_aliases_expand_to_users_and_remote(tmp_path):
    aliases = "team: alice, bob@example.test, carol@example.org\nsolo: bob\n"
    _, recipients, _ = make_local(tmp_path, aliases)
    assert recipients.resolve("team@example.test") == ["alice", "bob"]
    targets = recipients.expand("team@example.test")
    assert targets is not None
    assert [(t.kind, t.value) for t in targets] == [
        ("mailbox", "alice"),
        ("mailbox", "bob"),
        ("forward", "carol@example.org"),
    ]
    assert recipients.resolve("solo+tag@example.test") == ["bob"]


def test_alias_naming_itself_delivers_to_the_user(tmp_path):
    _, recipients, _ = make_local(tmp_path, "alice: alice, bob\n")
    assert recipients.resolve("alice@example.test") == ["alice", "bob"]


def test_case_009_quoted_pipe_local_part_is_only_a_key(tmp_path):
    _, recipients, _ = make_local(tmp_path)
    with pytest.raises(UnknownRecipient):
        recipients.resolve('"|touch /tmp/roost-pwned3"@example.test')
    with pytest.raises(UnknownRecipient):
        recipients.resolve('"/tmp/roost-pwned4"@example.test')
    with pytest.raises(UnknownRecipient):
        recipients.resolve('":include:/etc/passwd"@example.test')


def test_include_file(tmp_path):
    (tmp_path / "list").write_text("# members\nalice\nbob, dave@example.org\n")
    _, recipients, _ = make_local(tmp_path, f"list: :include:{tmp_path}/list\n")
    targets = recipients.expand("list@example.test")
    assert targets is not None
    assert [(t.kind, t.value) for t in targets] == [
        ("mailbox", "alice"),
        ("mailbox", "bob"),
        ("forward", "dave@example.org"),
    ]


# -- deliver ------------------------------------------------------------------


def test_deliver_writes_maildir_with_headers_and_lf(tmp_path, caplog):
    settings, _, local = make_local(tmp_path)
    caplog.set_level("INFO", logger="roost.local")
    outcome = local.deliver(
        envelope("alice+x@example.test"), MESSAGE, "alice+x@example.test"
    )
    assert outcome.result.status == "sent"
    assert outcome.delivered_users == ("alice",)
    [path] = mailbox_files(settings, "alice")
    assert path.read_bytes() == (
        b"Return-Path: <ann@example.org>\nDelivered-To: alice+x@example.test\n"
        b"From: ann@example.org\nSubject: hi\n\nline 1\nline 2\n"
    )
    assert ".RABCDEFGHJK." in path.name
    line = caplog.records[-1].getMessage()
    assert line.startswith("ABCDEFGHJK: to=<alice+x@example.test>, relay=local, ")
    assert "dsn=2.0.0, status=sent (delivered to maildir)" in line


def test_null_sender_return_path(tmp_path):
    settings, _, local = make_local(tmp_path)
    local.deliver(envelope("alice@example.test", ""), MESSAGE, "alice@example.test")
    [path] = mailbox_files(settings, "alice")
    assert path.read_bytes().startswith(b"Return-Path: <>\n")


def test_case_009_sender_with_shell_metacharacters_is_data(tmp_path):
    settings, _, local = make_local(tmp_path)
    for sender in (
        '"; touch /tmp/roost-pwned; "@example.org',
        "`touch${IFS}/tmp/roost-pwned2`@example.org",
    ):
        env = envelope("alice@example.test", sender)
        env.queue_id = "BCDEFGHJKM" if "`" in sender else "CDEFGHJKMN"
        assert local.deliver(env, MESSAGE, "alice@example.test").result.status == "sent"
    copies = [p.read_bytes() for p in mailbox_files(settings, "alice")]
    assert any(
        b'Return-Path: <"; touch /tmp/roost-pwned; "@example.org>' in c for c in copies
    )
    assert any(
        b"Return-Path: <`touch${IFS}/tmp/roost-pwned2`@example.org>" in c
        for c in copies
    )
    assert not Path("/tmp/roost-pwned").exists()
    assert not Path("/tmp/roost-pwned2").exists()


def test_duplicate_users_in_one_message_get_one_copy(tmp_path):
    settings, _, local = make_local(tmp_path, "team: alice, alice@example.test\n")
    outcome = local.deliver(envelope("team@example.test"), MESSAGE, "team@example.test")
    assert outcome.result.status == "sent"
    assert len(mailbox_files(settings, "alice")) == 1


def test_check_duplicates_finds_copy_after_crash(tmp_path):
    settings, _, local = make_local(tmp_path)
    env = envelope("alice@example.test")
    local.deliver(env, MESSAGE, "alice@example.test")
    box = maildir.mailbox_path(settings.mailbox_directory, "alice")
    assert find_copy(box, env.queue_id)
    # the copy was read and moved to cur/ by an IMAP client meanwhile
    [path] = mailbox_files(settings, "alice")
    os.rename(path, box / "cur" / (path.name + ":2,S"))
    outcome = local.deliver(env, MESSAGE, "alice@example.test", check_duplicates=True)
    assert outcome.result.status == "sent"
    assert len(mailbox_files(settings, "alice")) == 1


def test_unwritable_mailbox_defers_with_reason(tmp_path):
    if os.geteuid() == 0:
        settings, _, local = make_local(tmp_path)
        # root ignores permissions: make the mailbox path a file instead
        settings.mailbox_directory.mkdir(parents=True)
        (settings.mailbox_directory / "alice").write_text("not a directory")
    else:
        settings, _, local = make_local(tmp_path)
        settings.mailbox_directory.mkdir(parents=True)
        settings.mailbox_directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    outcome = local.deliver(
        envelope("alice@example.test"), MESSAGE, "alice@example.test"
    )
    assert outcome.result.status == "deferred"
    assert outcome.result.dsn.startswith("4.")
    assert "cannot write to mailbox of alice" in outcome.result.reason


def test_case_013_alias_loop_bounces_once(tmp_path):
    # RFC 5321 6.3: loops must be detected and end in one bounce
    settings, _, local = make_local(tmp_path, "loop1: loop2\nloop2: loop1\n")
    outcome = local.deliver(
        envelope("loop1@example.test"), MESSAGE, "loop1@example.test"
    )
    assert outcome.result.status == "bounced"
    assert outcome.result.dsn == "5.4.6"
    assert "mail forwarding loop" in outcome.result.reason


def test_delivered_to_loop_is_detected(tmp_path):
    settings, _, local = make_local(tmp_path, "fwd: carol@example.org\n")
    looped = b"Delivered-To: fwd@example.test\r\n" + MESSAGE
    assert has_delivered_to(looped, "FWD@example.test")
    outcome = local.deliver(envelope("fwd@example.test"), looped, "fwd@example.test")
    assert outcome.result.status == "bounced"
    assert outcome.result.dsn == "5.4.6"
    assert outcome.forwards == ()


def test_forward_is_returned_to_the_queue(tmp_path):
    _, _, local = make_local(tmp_path, "fwd: carol@example.org, alice\n")
    outcome = local.deliver(envelope("fwd@example.test"), MESSAGE, "fwd@example.test")
    assert outcome.result.status == "sent"
    assert outcome.forwards == ("carol@example.org",)
    assert outcome.delivered_users == ("alice",)


def test_file_alias_appends_mbox(tmp_path):
    mbox = tmp_path / "archive.mbox"
    _, _, local = make_local(tmp_path, f"archive: {mbox}\n")
    body = MESSAGE + b"From the start\r\n"
    for _ in range(2):
        outcome = local.deliver(
            envelope("archive@example.test"), body, "archive@example.test"
        )
        assert outcome.result.status == "sent"
    text = mbox.read_bytes()
    assert text.count(b"\nFrom ann@example.org ") + text.startswith(b"From ann") == 2
    assert b"\n>From the start\n" in text


def test_command_alias_refused_by_default(tmp_path):
    marker = tmp_path / "ran"
    _, _, local = make_local(tmp_path, f'run: "|/usr/bin/touch {marker}"\n')
    outcome = local.deliver(envelope("run@example.test"), MESSAGE, "run@example.test")
    assert outcome.result.status == "bounced"
    assert "restricted" in outcome.result.reason
    assert not marker.exists()


def test_delivered_copy_keeps_bytes():
    env = envelope("a@example.test")
    data = b"Subject: x\r\n\r\n\xff\xfe 8bit\r\nno final newline"
    assert delivered_copy(env, data, "a@example.test").endswith(
        b"\n\xff\xfe 8bit\nno final newline"
    )
