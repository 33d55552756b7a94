"""postsuper's operations on queue files, maildrop entries included: what
mailq lists can be deleted, held and shown, with or without a server."""

import asyncio
import time

from roost.queue import QueueState, Spool
from roost.queue.control import apply_to_files, request, select_ids
from tests.queue.support import MESSAGE, envelope, make_rig

HOST = "mx.example.test"


def _apply(spool, operation, queue_id):
    return apply_to_files(spool, operation, queue_id, myhostname=HOST, now=time.time())


def _queued(spool, *rcpts):
    queue_id = spool.enqueue_now(envelope(*rcpts), MESSAGE)
    return queue_id


def test_select_all_includes_the_maildrop_unless_queues_are_named(tmp_path):
    spool = Spool(tmp_path / "q")
    queued = _queued(spool, "a@example.org")
    spool.write_state_now(queued, QueueState(attempts=1))
    dropped = spool.drop(envelope("b@example.org"), MESSAGE)
    assert select_ids(spool, ["ALL"]) == [queued, dropped]
    assert select_ids(spool, ["ALL"], all_of="maildrop") == [dropped]
    assert select_ids(spool, ["ALL"], all_of="deferred") == [queued]
    assert select_ids(spool, ["ALL"], all_of="hold") == []


def test_delete_a_maildrop_entry(tmp_path):
    spool = Spool(tmp_path / "q")
    dropped = spool.drop(envelope("b@example.org"), MESSAGE)
    assert _apply(spool, "delete", dropped) == dropped
    assert spool.maildrop_names() == []
    assert _apply(spool, "delete", dropped) is None
    assert list(spool.scan()) == []


def test_hold_and_requeue_pick_a_maildrop_entry_up_first(tmp_path):
    spool = Spool(tmp_path / "q")
    dropped = spool.drop(envelope("b@example.org", local_uid=7), MESSAGE)
    # nothing to release: the entry stays where it is
    assert _apply(spool, "release", dropped) is None
    assert spool.maildrop_names() == [dropped]

    assert _apply(spool, "hold", dropped) == dropped
    assert spool.maildrop_names() == []
    assert spool.read_state(dropped).hold
    env, data = spool.read(dropped)
    assert env.pickup_name == dropped
    assert data.startswith(f"Received: by {HOST} (Roost, from userid 7)".encode())

    other = spool.drop(envelope("c@example.org"), MESSAGE)
    assert _apply(spool, "requeue", other) == other
    assert spool.exists(other)
    assert spool.maildrop_names() == []


def test_delete_takes_the_maildrop_twin_left_by_a_crash(tmp_path):
    # a crash after pickup queued the file but before it was unlinked
    spool = Spool(tmp_path / "q")
    dropped = spool.drop(envelope("b@example.org"), MESSAGE)
    twin = envelope("b@example.org", pickup_name=dropped)
    twin.queue_id = dropped
    spool.enqueue_now(twin, MESSAGE)
    assert [e.queue_id for e in spool.scan()] == [dropped]  # listed once

    assert _apply(spool, "delete", dropped) == dropped
    assert spool.queue_ids() == []
    assert spool.maildrop_names() == []


def test_delete_keeps_a_maildrop_file_whose_name_merely_collides(tmp_path):
    spool = Spool(tmp_path / "q")
    dropped = spool.drop(envelope("b@example.org"), MESSAGE)
    other = envelope("c@example.org")
    other.queue_id = dropped
    spool.enqueue_now(other, MESSAGE)
    assert _apply(spool, "delete", dropped) == dropped
    assert spool.queue_ids() == []
    assert spool.maildrop_names() == [dropped]


def test_bad_ids_touch_nothing(tmp_path):
    spool = Spool(tmp_path / "q")
    (tmp_path / "q" / "victim").write_bytes(b"x")
    for operation in ("delete", "hold", "requeue"):
        assert _apply(spool, operation, "../victim") is None
    assert (tmp_path / "q" / "victim").exists()


def test_server_deletes_and_holds_maildrop_entries(tmp_path, caplog):
    # no workers: nothing picks the files up behind the requests' back
    caplog.set_level("INFO")
    rig = make_rig(tmp_path)

    async def flow():
        await rig.manager.start(workers=False)
        try:
            gone = rig.spool.drop(envelope("alice@example.test"), MESSAGE)
            held = rig.spool.drop(envelope("bob@example.test", local_uid=1000), MESSAGE)
            reply = await asyncio.to_thread(
                request, rig.spool, {"cmd": "hold", "ids": [held]}
            )
            assert reply == {"ok": True, "count": 1}
            ids = select_ids(rig.spool, ["ALL"], all_of="maildrop")
            assert ids == [gone]
            reply = await asyncio.to_thread(
                request, rig.spool, {"cmd": "delete", "ids": ids}
            )
            assert reply == {"ok": True, "count": 1}
            return gone, held
        finally:
            await rig.manager.stop()

    gone, held = asyncio.run(flow())
    rig.spool.close()
    assert rig.spool.maildrop_names() == []
    assert rig.spool.queue_ids() == [held]
    assert rig.spool.read_state(held).hold
    lines = [r.getMessage() for r in caplog.records]
    assert f"{held}: placed on hold" in lines
    assert f"{gone}: removed" in lines
    picked = [r.getMessage() for r in caplog.records if r.name == "roost.pickup"]
    assert picked == [f"{held}: uid=1000 from=<ann@example.org>"]


def test_no_attempt_starts_while_postsuper_changes_a_message(tmp_path):
    # the message waits in the ready queue; the attempt a worker would
    # start while its files change is left for afterwards
    rig = make_rig(tmp_path)

    async def flow():
        await rig.manager.start(workers=False)
        try:
            gone = await rig.spool.enqueue(envelope("alice@example.test"), MESSAGE)
            held = await rig.spool.enqueue(envelope("bob@example.test"), MESSAGE)
            for operation, queue_id in (("delete", gone), ("hold", held)):
                changed, _ = await asyncio.gather(
                    rig.manager.operate(operation, [queue_id]),
                    rig.manager.deliver_message(queue_id),
                )
                assert changed == 1
            assert rig.mailbox("alice") == []
            assert rig.mailbox("bob") == []
            assert await rig.manager.operate("release", [held]) == 1
            await rig.manager.deliver_message(held)
            return gone, held
        finally:
            await rig.manager.stop()

    gone, held = asyncio.run(flow())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    assert rig.mailbox("alice") == []
    assert len(rig.mailbox("bob")) == 1
