"""kill -9 in the middle of a load: what got a 250 is delivered exactly once.

Issue 2's proof of the durability rule (ARCHITECTURE "Rules"): a 250
after DATA promises the message survives a crash (RFC 5321 4.1.1.4,
6.1), and recovery must not deliver twice. A bounded asyncio sender
pushes 500 messages over 10 sessions to a real `roost serve`; at a
random point the server gets SIGKILL. It is then restarted, the queue
drains, and each message's unique token is counted in the Maildirs.
A message whose 250 was lost with the connection may land or not, but
never twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.conftest import RoostServer

MESSAGES = 500
SESSIONS = 10
IO_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 180.0
SECOND_RECIPIENT_EVERY = 7


class SessionError(Exception):
    pass


@dataclass
class Load:
    port: int
    pid: int
    kill_after: int
    accepted: set[int] = field(default_factory=set)
    attempted: set[int] = field(default_factory=set)
    killed_at: int | None = None

    def recipients(self, seq: int) -> list[str]:
        if seq % SECOND_RECIPIENT_EVERY == 0:
            return ["alice@example.test", "bob@example.test"]
        return ["alice@example.test"]

    def note_accepted(self, seq: int) -> None:
        self.accepted.add(seq)
        if self.killed_at is None and len(self.accepted) >= self.kill_after:
            self.killed_at = len(self.accepted)
            os.kill(self.pid, signal.SIGKILL)


def token(seq: int) -> str:
    return f"crashtok{seq:05d}x"


def message(seq: int) -> bytes:
    tok = token(seq)
    filler = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    return (
        f"From: load@example.org\r\nTo: alice@example.test\r\n"
        f"Subject: crash test {tok}\r\nMessage-ID: <{tok}@example.org>\r\n"
        f"\r\n".encode()
        + filler * (seq % 50 + 1)
    )


async def reply(reader: asyncio.StreamReader) -> bytes:
    """One whole (possibly multi-line) reply; its last line."""
    while True:
        line = await asyncio.wait_for(reader.readline(), IO_TIMEOUT_S)
        if not line.endswith(b"\n"):
            raise SessionError("connection closed")
        if line[3:4] != b"-":
            return line


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    line = await reply(reader)
    if not line.startswith(code):
        raise SessionError(line.decode(errors="replace"))


async def transaction(
    load: Load, seq: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"MAIL FROM:<load@example.org>\r\n")
    await expect(reader, b"250")
    for rcpt in load.recipients(seq):
        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        await expect(reader, b"250")
    writer.write(b"DATA\r\n")
    await expect(reader, b"354")
    load.attempted.add(seq)
    writer.write(message(seq) + b".\r\n")
    await expect(reader, b"250")
    load.note_accepted(seq)


async def worker(load: Load, todo: asyncio.Queue[int]) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while not todo.empty():
        seq = todo.get_nowait()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", load.port), IO_TIMEOUT_S
                )
                await expect(reader, b"220")
                writer.write(b"EHLO load.example.org\r\n")
                await expect(reader, b"250")
            assert reader is not None
            await transaction(load, seq, reader, writer)
        except (OSError, SessionError, TimeoutError):
            # the server is gone: this message and later ones fail
            if writer is not None:
                writer.close()
            writer = reader = None
    if writer is not None:
        writer.close()


async def run_load(load: Load) -> None:
    todo: asyncio.Queue[int] = asyncio.Queue()
    for seq in range(MESSAGES):
        todo.put_nowait(seq)
    workers = [worker(load, todo) for _ in range(SESSIONS)]
    await asyncio.wait_for(asyncio.gather(*workers), LOAD_TIMEOUT_S)


def count_tokens(server: RoostServer, user: str) -> Counter[int]:
    counts: Counter[int] = Counter()
    for path in server.messages(user):
        data = path.read_bytes()
        start = data.find(b"crashtok")
        assert start >= 0, path
        seq = int(data[start + 8 : start + 13])
        counts[seq] += 1
    return counts


@pytest.mark.slow
def test_kill_9_mid_load_loses_and_duplicates_nothing(
    fresh_roost_server: RoostServer,
) -> None:
    server = fresh_roost_server
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    assert server.proc is not None
    load = Load(
        port=server.port("smtp"),
        pid=server.proc.pid,
        kill_after=rng.randrange(20, MESSAGES - 50),
    )
    started = time.monotonic()
    asyncio.run(run_load(load))
    print(
        f"seed={seed} kill_after={load.kill_after} accepted={len(load.accepted)}"
        f" attempted={len(load.attempted)} in {time.monotonic() - started:.1f}s"
    )

    assert load.killed_at is not None, f"the load never reached the kill (seed {seed})"
    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    assert len(load.accepted) < MESSAGES

    server.start()
    server.wait_queue_empty(timeout_s=120)

    for user in ("alice", "bob"):
        wanted = {
            seq
            for seq in load.accepted
            if user == "alice" or seq % SECOND_RECIPIENT_EVERY == 0
        }
        server.wait_delivered(user, len(wanted), timeout_s=120)
        counts = count_tokens(server, user)
        missing = sorted(wanted - set(counts))
        doubled = sorted(seq for seq, n in counts.items() if n > 1)
        strays = sorted(set(counts) - load.attempted)
        assert not missing, f"{user}: lost after 250: {missing[:20]} (seed {seed})"
        assert not doubled, f"{user}: delivered twice: {doubled[:20]} (seed {seed})"
        assert not strays, f"{user}: never sent: {strays[:20]}"
