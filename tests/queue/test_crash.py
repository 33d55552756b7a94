"""kill -9 a queue manager in the middle of delivering; after a restart
every queued message is in each mailbox exactly once."""

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.queue.support import envelope, make_rig

MESSAGES = 60


def write_config(tmp_path: Path) -> Path:
    conf = tmp_path / "main.cf"
    conf.write_text(
        "myhostname = mx.example.test\n"
        "mydestination = $myhostname, example.test\n"
        f"data_directory = {tmp_path / 'data'}\n"
        f"alias_maps = hash:{tmp_path / 'aliases'}\n"
    )
    (tmp_path / "aliases").write_text("")
    return conf


def message(n: int) -> bytes:
    return f"Subject: m{n}\r\nMessage-ID: <crash-{n}@test>\r\n\r\nbody {n}\r\n".encode()


def test_kill_9_mid_delivery_then_restart_delivers_exactly_once(tmp_path):
    conf = write_config(tmp_path)
    rig = make_rig(tmp_path)

    async def fill():
        for n in range(MESSAGES):
            env = envelope("alice@example.test", "bob@example.test")
            await rig.spool.enqueue(env, message(n))

    asyncio.run(fill())
    rig.spool.close()

    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.queue.crash_child", str(conf)],
        cwd=root,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    sent = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(b"sent "):
                sent += 1
            if sent >= MESSAGES // 2:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert sent >= MESSAGES // 2
    assert rig.spool.queue_ids(), "the kill came too late to test anything"

    async def restart():
        await rig.manager.start()
        try:
            await rig.manager.wait_idle()
        finally:
            await rig.manager.stop()

    asyncio.run(restart())
    rig.spool.close()
    assert rig.spool.queue_ids() == []
    for user in ("alice", "bob"):
        copies = rig.mailbox(user)
        ids = sorted(int(re.search(rb"<crash-(\d+)@test>", c).group(1)) for c in copies)
        assert ids == list(range(MESSAGES)), user
