import asyncio
import email
import email.policy

import pytest

from roost.queue import Recipient
from roost.queue.manager import backoff_s
from roost.queue.result import RecipientResult
from tests.queue.support import MESSAGE, envelope, make_rig, make_settings


def run(coro):
    return asyncio.run(coro)


async def started(rig, workers=False):
    await rig.manager.start(workers=workers)
    return rig


async def deliver_all(rig):
    for queue_id in rig.spool.queue_ids():
        await rig.manager.deliver_message(queue_id)


def dsn_parts(raw: bytes):
    msg = email.message_from_bytes(
        raw.replace(b"\r\n", b"\n"), policy=email.policy.compat32
    )
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    return msg, msg.get_payload()


def test_backoff_doubles_between_limits(tmp_path):
    settings = make_settings(tmp_path)
    assert [backoff_s(n, settings) for n in (1, 2, 3, 4, 5, 9)] == [
        300,
        600,
        1200,
        2400,
        4000,
        4000,
    ]


def test_new_mail_is_delivered_at_once_and_removed(tmp_path, caplog):
    rig = make_rig(tmp_path)
    caplog.set_level("INFO")

    async def flow():
        await rig.manager.start()
        try:
            queue_id = await rig.spool.enqueue(
                envelope("alice@example.test", arrival=rig.clock.now), MESSAGE
            )
            await rig.manager.wait_idle()
        finally:
            await rig.manager.stop()
            rig.spool.close()
        return queue_id

    queue_id = run(flow())
    assert rig.spool.queue_ids() == []
    [copy] = rig.mailbox("alice")
    assert copy.startswith(b"Return-Path: <ann@example.org>\nDelivered-To: ")
    assert b"\r" not in copy
    lines = [r.getMessage() for r in caplog.records]
    assert (
        f"{queue_id}: from=<ann@example.org>, size={len(MESSAGE)}, nrcpt=1 "
        "(queue active)" in lines
    )
    assert f"{queue_id}: removed" in lines


def test_temporary_failure_defers_with_backoff_and_reason(tmp_path):
    rig = make_rig(tmp_path)
    rig.settings.mailbox_directory.mkdir(parents=True)
    (rig.settings.mailbox_directory / "alice").write_text("in the way")

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope("alice@example.test", arrival=rig.clock.now), MESSAGE
        )
        await rig.manager.deliver_message(queue_id)
        first = rig.spool.read_state(queue_id)
        rig.clock.now += 301
        await rig.manager.deliver_message(queue_id)
        second = rig.spool.read_state(queue_id)
        await rig.manager.stop()
        return first, second

    first, second = run(flow())
    assert first.attempts == 1
    assert first.next_attempt == 1_800_000_000 + 300
    assert "cannot write to mailbox of alice" in first.reasons[0]
    assert second.attempts == 2
    assert second.next_attempt == 1_800_000_000 + 301 + 600
    rig.spool.close()


def test_unknown_user_bounces_rfc3464_to_local_sender(tmp_path):
    rig = make_rig(tmp_path)

    async def flow():
        await started(rig)
        await rig.spool.enqueue(
            envelope("nobody@example.test", sender="bob@example.test"), MESSAGE
        )
        await deliver_all(rig)  # the original: bounced, removed
        await deliver_all(rig)  # the DSN: into bob's mailbox
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    [raw] = rig.mailbox("bob")
    assert raw.startswith(b"Return-Path: <>\n")
    msg, parts = dsn_parts(raw)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    per_message, per_recipient = parts[1].get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.test"
    assert per_recipient["Final-Recipient"] == "rfc822; nobody@example.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert b"Subject: hello" in parts[2].get_payload().encode()
    assert b"body line" not in raw


def test_ret_full_returns_whole_message_and_never_is_silent(tmp_path):
    rig = make_rig(tmp_path)

    async def flow():
        await started(rig)
        await rig.spool.enqueue(
            envelope(
                "nobody@example.test",
                sender="bob@example.test",
                dsn_ret="FULL",
                dsn_envid="env-1",
            ),
            MESSAGE,
        )
        quiet = envelope("nobody@example.test", sender="alice@example.test")
        quiet.recipients = [Recipient("nobody@example.test", None, ("NEVER",))]
        await rig.spool.enqueue(quiet, MESSAGE)
        await deliver_all(rig)
        await deliver_all(rig)
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.mailbox("alice") == []
    [raw] = rig.mailbox("bob")
    _, parts = dsn_parts(raw)
    assert parts[2].get_content_type() == "message/rfc822"
    assert parts[2].get_payload()[0]["Subject"] == "hello"
    assert parts[1].get_payload()[0]["Original-Envelope-Id"] == "env-1"


def test_case_013_null_sender_failure_sends_nothing(tmp_path, caplog):
    # RFC 5321 6.1: no notification is ever sent to the null reverse-path
    rig = make_rig(tmp_path)
    caplog.set_level("INFO")

    async def flow():
        await started(rig)
        await rig.spool.enqueue(envelope("nobody@example.test", sender=""), MESSAGE)
        await deliver_all(rig)
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    assert any(
        "null sender, no notification sent" in r.getMessage() for r in caplog.records
    )


def test_case_013_failed_bounce_goes_once_to_postmaster(tmp_path):
    # RFC 5321 3.6.3: no notification about a notification; our own
    # failed bounce is reported to the postmaster (double bounce), once.
    rig = make_rig(tmp_path)

    async def flow():
        await started(rig)
        await rig.spool.enqueue(
            envelope("nobody@example.test", sender="gone@example.test"), MESSAGE
        )
        for _ in range(4):
            await deliver_all(rig)
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    [raw] = rig.mailbox("postmaster")
    msg, parts = dsn_parts(raw)
    assert msg["Subject"].startswith("Postmaster Copy:")
    assert parts[1].get_payload()[1]["Final-Recipient"] == "rfc822; gone@example.test"


def test_remote_recipients_deferred_without_transport(tmp_path):
    rig = make_rig(tmp_path)

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope("alice@example.test", "carol@example.org", arrival=rig.clock.now),
            MESSAGE,
        )
        await rig.manager.deliver_message(queue_id)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    state = rig.spool.read_state(queue_id)
    assert state.done == {0: "sent"}
    assert state.reasons == {1: "no outbound transport"}
    assert len(rig.mailbox("alice")) == 1


def test_remote_transport_results_per_recipient(tmp_path):
    calls = []

    async def remote(env, data, recipients):
        calls.append([r.address for r in recipients])
        answers = {
            "a@example.org": RecipientResult.sent(
                "a@example.org", "250 ok", "mx.example.org"
            ),
            "b@example.org": RecipientResult(
                "b@example.org", "deferred", "4.4.1", "connection refused"
            ),
            "c@example.org": RecipientResult(
                "c@example.org",
                "bounced",
                "5.1.1",
                "host said 550",
                diagnostic="smtp; 550 5.1.1 no",
            ),
        }
        return [answers[r.address] for r in recipients]

    rig = make_rig(tmp_path, remote=remote)

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope(
                "a@example.org",
                "b@example.org",
                "c@example.org",
                sender="bob@example.test",
                arrival=rig.clock.now,
            ),
            MESSAGE,
        )
        await rig.manager.deliver_message(queue_id)
        await deliver_all(rig)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    state = rig.spool.read_state(queue_id)
    assert calls[1] == ["b@example.org"]
    assert state.done == {0: "sent", 2: "bounced"}
    assert state.reasons == {1: "connection refused"}
    assert calls[0] == ["a@example.org", "b@example.org", "c@example.org"]
    [raw] = rig.mailbox("bob")
    _, parts = dsn_parts(raw)
    rcpt = parts[1].get_payload()[1]
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no"


def test_expired_message_bounces_with_last_reason(tmp_path):
    rig = make_rig(tmp_path, maximal_queue_lifetime="1h")

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope(
                "carol@example.org", sender="bob@example.test", arrival=rig.clock.now
            ),
            MESSAGE,
        )
        await rig.manager.deliver_message(queue_id)
        assert rig.spool.exists(queue_id)
        rig.clock.now += 3601
        await rig.manager.deliver_message(queue_id)
        assert not rig.spool.exists(queue_id)
        await deliver_all(rig)
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    [raw] = rig.mailbox("bob")
    _, parts = dsn_parts(raw)
    rcpt = parts[1].get_payload()[1]
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "4.3.0"
    assert "no outbound transport" in rcpt["Diagnostic-Code"]


def test_delay_warning_sent_once(tmp_path):
    rig = make_rig(tmp_path, delay_warning_time="1h")

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope(
                "carol@example.org", sender="bob@example.test", arrival=rig.clock.now
            ),
            MESSAGE,
        )
        for _ in range(3):
            rig.clock.now += 3000
            await rig.manager.deliver_message(queue_id)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    ids = rig.spool.queue_ids()
    assert queue_id in ids
    warnings = [i for i in ids if i != queue_id]
    assert len(warnings) == 1
    env, data = rig.spool.read(warnings[0])
    assert env.mail_from == ""
    assert env.recipients[0].address == "bob@example.test"
    _, parts = dsn_parts(data)
    assert parts[1].get_payload()[1]["Action"] == "delayed"


def test_alias_forward_keeps_null_sender_and_adds_delivered_to(tmp_path):
    # RFC 5321 4.5.5: forwarding must not turn <> into a real sender
    rig = make_rig(tmp_path, aliases="fwd: dead@relay.example.org\n")

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope("fwd@example.test", sender=""), MESSAGE
        )
        await rig.manager.deliver_message(queue_id)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    [copy_id] = rig.spool.queue_ids()
    assert copy_id != queue_id
    env, data = rig.spool.read(copy_id)
    assert env.mail_from == ""
    assert [r.address for r in env.recipients] == ["dead@relay.example.org"]
    assert data.startswith(b"Delivered-To: fwd@example.test\r\n")


def test_recovered_message_is_not_delivered_twice(tmp_path):
    rig = make_rig(tmp_path)

    async def crash_after_mailbox_write():
        await started(rig)
        queue_id = await rig.spool.enqueue(
            envelope("alice@example.test", "bob@example.test"), MESSAGE
        )
        # deliver to alice as the attempt would, then "crash": no state
        rig.manager.local.deliver(*rig.spool.read(queue_id), "alice@example.test")
        await rig.manager.stop()
        return queue_id

    async def restart():
        await started(rig)
        await deliver_all(rig)
        await rig.manager.stop()

    run(crash_after_mailbox_write())
    run(restart())
    rig.spool.close()
    assert len(rig.mailbox("alice")) == 1
    assert len(rig.mailbox("bob")) == 1
    assert rig.spool.queue_ids() == []


def test_hold_release_delete(tmp_path):
    rig = make_rig(tmp_path)

    async def flow():
        await started(rig)
        first = await rig.spool.enqueue(envelope("alice@example.test"), MESSAGE)
        second = await rig.spool.enqueue(envelope("bob@example.test"), MESSAGE)
        assert await rig.manager.operate("hold", [first, second]) == 2
        await rig.manager.deliver_message(first)
        assert rig.spool.exists(first)
        assert rig.spool.read_state(first).hold
        assert await rig.manager.operate("release", [first]) == 1
        await rig.manager.deliver_message(first)
        assert not rig.spool.exists(first)
        assert await rig.manager.operate("delete", [second, "NOSUCHIDXX"]) == 1
        await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    assert len(rig.mailbox("alice")) == 1
    assert rig.mailbox("bob") == []


def test_maildrop_pickup_is_queued_once(tmp_path, caplog):
    caplog.set_level("INFO")
    rig = make_rig(tmp_path)
    name = rig.spool.drop(envelope("alice@example.test", local_uid=1000), MESSAGE)

    async def flow():
        await rig.manager.start()
        try:
            await rig.manager.wait_idle()
        finally:
            await rig.manager.stop()

    run(flow())
    rig.spool.close()
    assert rig.spool.maildrop_names() == []
    [copy] = rig.mailbox("alice")
    assert b"(Roost, from userid 1000)\n\tid " + name.encode() in copy
    # pflogsumm counts "pickup[pid]: QID: uid=" lines as received mail
    picked = [r for r in caplog.records if r.name == "roost.pickup"]
    assert [r.getMessage() for r in picked] == [
        f"{name}: uid=1000 from=<ann@example.org>"
    ]


def test_second_manager_cannot_take_the_queue(tmp_path):
    rig = make_rig(tmp_path)

    async def flow():
        await rig.manager.start(workers=False)
        try:
            fd = rig.spool.try_lock()
            assert fd is None
        finally:
            await rig.manager.stop()

    run(flow())
    rig.spool.close()


@pytest.mark.parametrize("command", ["flush", "wakeup"])
def test_control_socket_answers(tmp_path, command):
    from roost.queue.control import request

    rig = make_rig(tmp_path)

    async def flow():
        await rig.manager.start()
        try:
            reply = await asyncio.to_thread(request, rig.spool, {"cmd": command})
            bad = await asyncio.to_thread(lambda: _bad_request(rig.spool))
        finally:
            await rig.manager.stop()
        return reply, bad

    reply, bad = run(flow())
    rig.spool.close()
    assert reply == {"ok": True, "count": 0}
    assert bad == "unknown command 'nope'"


def _bad_request(spool):
    from roost.queue.control import ControlError, request

    try:
        request(spool, {"cmd": "nope"})
    except ControlError as exc:
        return str(exc)
    return None


def test_fresh_message_is_delivered_from_memory(tmp_path, monkeypatch):
    """The first attempt of a message enqueued in this process uses the
    bytes handed to enqueue; it never reads the queue file back."""
    rig = make_rig(tmp_path)

    def no_reads(queue_id):
        raise AssertionError(f"queue file {queue_id} read back")

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(envelope("alice@example.test"), MESSAGE)
        monkeypatch.setattr(rig.spool, "read", no_reads)
        await rig.manager.deliver_message(queue_id)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    assert not rig.spool.exists(queue_id)
    [copy] = rig.mailbox("alice")
    assert copy.endswith(MESSAGE.replace(b"\r\n", b"\n"))


def test_operated_message_is_read_from_its_files(tmp_path, monkeypatch):
    """After postsuper touches a message (hold, release) the files are
    the truth: the in-memory copy from enqueue is dropped."""
    rig = make_rig(tmp_path)
    reads = []
    real_read = rig.spool.read

    def counting_read(queue_id):
        reads.append(queue_id)
        return real_read(queue_id)

    async def flow():
        await started(rig)
        queue_id = await rig.spool.enqueue(envelope("alice@example.test"), MESSAGE)
        monkeypatch.setattr(rig.spool, "read", counting_read)
        assert await rig.manager.operate("hold", [queue_id]) == 1
        await rig.manager.deliver_message(queue_id)
        assert rig.spool.exists(queue_id)
        assert await rig.manager.operate("release", [queue_id]) == 1
        await rig.manager.deliver_message(queue_id)
        await rig.manager.stop()
        return queue_id

    queue_id = run(flow())
    rig.spool.close()
    assert reads == [queue_id, queue_id]
    assert not rig.spool.exists(queue_id)
    assert len(rig.mailbox("alice")) == 1
