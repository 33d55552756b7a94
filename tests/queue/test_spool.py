import asyncio
import os

import pytest

from roost.queue import Envelope, QueueState, Recipient, Spool
from roost.queue.envelope import decode_queue_file, encode_queue_file


def envelope(*rcpts: str, sender: str = "ann@example.org") -> Envelope:
    return Envelope(mail_from=sender, recipients=[Recipient(r) for r in rcpts])


def test_queue_file_round_trip():
    env = envelope("bo@example.test")
    env.queue_id = "ABCDEFGHJK"
    env.recipients.append(Recipient("cy@example.test", "rfc822;cy@x", ("NEVER",)))
    data = b"Subject: x\r\n\r\nbody\n\x00\xff"
    back, body = decode_queue_file(encode_queue_file(env, data))
    assert back == env
    assert body == data


def test_enqueue_writes_durable_file_and_returns_id(tmp_path):
    spool = Spool(tmp_path / "q")
    try:
        env = envelope("bo@example.test")
        queue_id = asyncio.run(spool.enqueue(env, b"Subject: hi\r\n\r\nx\r\n"))
        assert spool.queue_ids() == [queue_id]
        back, data = spool.read(queue_id)
        assert back.mail_from == "ann@example.org"
        assert back.size == len(data)
        assert data == b"Subject: hi\r\n\r\nx\r\n"
        assert os.listdir(spool.incoming) == []
    finally:
        spool.close()


def test_concurrent_enqueues_are_batched_and_all_land(tmp_path):
    spool = Spool(tmp_path / "q")

    async def many() -> list[str]:
        return await asyncio.gather(
            *(spool.enqueue(envelope(f"u{i}@x.test"), b"x\r\n") for i in range(200))
        )

    try:
        ids = asyncio.run(many())
    finally:
        spool.close()
    assert len(set(ids)) == 200
    assert sorted(ids) == spool.queue_ids()


def test_listener_hears_each_enqueue(tmp_path):
    spool = Spool(tmp_path / "q")
    heard: list[str] = []
    spool.add_listener(heard.append)
    try:
        queue_id = asyncio.run(spool.enqueue(envelope("a@x.test"), b"x\r\n"))
    finally:
        spool.close()
    assert heard == [queue_id]


def test_enqueue_error_reaches_caller(tmp_path):
    spool = Spool(tmp_path / "q")
    os.rmdir(spool.incoming)
    try:
        with pytest.raises(FileNotFoundError):
            asyncio.run(spool.enqueue(envelope("a@x.test"), b"x\r\n"))
    finally:
        spool.close()


def test_state_write_and_remove(tmp_path):
    spool = Spool(tmp_path / "q")

    async def flow() -> tuple[str, QueueState]:
        queue_id = await spool.enqueue(envelope("a@x.test", "b@x.test"), b"x\r\n")
        state = QueueState(attempts=1, done={0: "sent"}, reasons={1: "disk full"})
        await spool.write_state(queue_id, state)
        return queue_id, spool.read_state(queue_id)

    try:
        queue_id, state = asyncio.run(flow())
        assert state.done == {0: "sent"}
        assert state.reasons == {1: "disk full"}
        asyncio.run(spool.remove(queue_id))
    finally:
        spool.close()
    assert spool.queue_ids() == []
    assert os.listdir(spool.state_dir) == []


def test_recover_removes_half_written_and_orphans(tmp_path):
    spool = Spool(tmp_path / "q")
    (spool.incoming / "ABCDEFGHJK").write_bytes(b"half")
    (spool.state_dir / "BCDEFGHJKM").write_bytes(b"{}")
    (spool.state_dir / ".BCDEFGHJKM.tmp").write_bytes(b"{")
    spool.recover()
    assert os.listdir(spool.incoming) == []
    assert os.listdir(spool.state_dir) == []


def test_maildrop_drop_and_scan(tmp_path):
    spool = Spool(tmp_path / "q")
    name = spool.drop(envelope("a@x.test"), b"Subject: s\r\n\r\nx\r\n")
    assert spool.maildrop_names() == [name]
    entries = list(spool.scan())
    assert [(e.queue_name, e.queue_id) for e in entries] == [("maildrop", name)]


def test_lock_is_exclusive(tmp_path):
    spool = Spool(tmp_path / "q")
    fd = spool.lock()
    try:
        assert spool.try_lock() is None
        with pytest.raises(TimeoutError):
            spool.lock(timeout_s=0.05)
    finally:
        spool.unlock(fd)
    fd2 = spool.try_lock()
    assert fd2 is not None
    spool.unlock(fd2)


def test_cancelled_enqueue_leaves_the_writer_running(tmp_path):
    """A session cancelled at shutdown while its enqueue is in the writer
    must not kill the writer thread: later enqueues still complete."""
    spool = Spool(tmp_path / "q")

    async def run() -> str:
        tasks = [
            asyncio.ensure_future(spool.enqueue(envelope(f"u{i}@x.test"), b"x\r\n"))
            for i in range(50)
        ]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return await spool.enqueue(envelope("last@x.test"), b"x\r\n")

    try:
        last = asyncio.run(asyncio.wait_for(run(), 60))
    finally:
        spool.close()
    assert last in spool.queue_ids()
