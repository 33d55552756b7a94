"""Child process for the kill -9 test: runs a queue manager over the
queue of a main.cf, printing one line per local copy written."""

from __future__ import annotations

import asyncio
import logging
import sys

from roost.config import load
from roost.delivery.aliases import AliasTable, alias_paths
from roost.delivery.local import LocalDelivery, LocalRecipients
from roost.queue import Spool
from roost.queue.manager import QueueManager
from tests.queue.support import FakeUsers


class Announce(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if "status=sent (delivered to maildir)" in line:
            sys.stdout.write("sent " + line.split(":", 1)[0] + "\n")
            sys.stdout.flush()


async def main(config: str) -> None:
    settings = load(config)
    recipients = LocalRecipients(
        settings, FakeUsers("alice", "bob"), AliasTable(alias_paths(settings))
    )
    spool = Spool(settings.queue_directory)
    manager = QueueManager(
        settings, spool, LocalDelivery(settings, recipients), concurrency=4
    )
    logger = logging.getLogger("roost.local")
    logger.setLevel(logging.INFO)
    logger.addHandler(Announce())
    await manager.start()
    sys.stdout.write("started\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
