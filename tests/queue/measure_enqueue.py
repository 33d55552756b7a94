"""Measure Spool.enqueue throughput: python -m tests.queue.measure_enqueue

Runs C concurrent enqueuers (as concurrent SMTP sessions would) writing
N messages of S bytes into a temporary queue directory on the disk under
the current directory, and prints messages per second.  Bounded: N
messages, then it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from roost.queue import Envelope, Recipient, Spool


async def measure(root: Path, total: int, concurrency: int, size: int) -> float:
    spool = Spool(root)
    data = b"Subject: load\r\n\r\n" + b"x" * size + b"\r\n"
    per_task = total // concurrency

    async def session() -> None:
        for _ in range(per_task):
            env = Envelope(mail_from="a@example.org", recipients=[Recipient("b@x")])
            await spool.enqueue(env, data)

    start = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    spool.close()
    return per_task * concurrency / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-s", type=int, default=4000)
    parser.add_argument("-c", type=int, nargs="*", default=[1, 10, 50])
    args = parser.parse_args()
    for concurrency in args.c:
        with tempfile.TemporaryDirectory(dir=".") as tmp:
            rate = asyncio.run(measure(Path(tmp), args.n, concurrency, args.s))
        print(f"concurrency {concurrency:>3}: {rate:8.0f} messages/s enqueued")


if __name__ == "__main__":
    main()
