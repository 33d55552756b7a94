"""postsuper: delete, hold, release and requeue queued mail, as postfix's.

    postsuper [-c PATH] -d ID|ALL|-  [queue...]   delete
    postsuper [-c PATH] -h ID|ALL|-  [queue...]   put on hold
    postsuper [-c PATH] -H ID|ALL|-  [queue...]   release from hold
    postsuper [-c PATH] -r ID|ALL|-  [queue...]   requeue (retry now)

`-` reads queue ids from standard input, one per line; ALL may be
limited to queues named after it (`postsuper -d ALL deferred`).  Ids of
messages still in the maildrop (mailq lists them while no server runs)
are accepted everywhere, and ALL includes them unless queues are named.
"""

from __future__ import annotations

import argparse
import sys
import time

from roost.cli.queuetools import (
    EX_OK,
    EX_USAGE,
    FatalError,
    ask_server,
    load_settings,
    open_spool,
    queue_locked,
    run,
)
from roost.config import Settings
from roost.queue import Spool
from roost.queue.control import apply_to_files, select_ids

_OPERATIONS = {"d": "delete", "h": "hold", "H": "release", "r": "requeue"}
_REPORTS = {
    "delete": "Deleted",
    "hold": "Placed on hold",
    "release": "Released from hold",
    "requeue": "Requeued",
}
_QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postsuper", description="queue maintenance", add_help=False
    )
    parser.add_argument("-c", dest="config", metavar="PATH", default=None)
    for flag, operation in _OPERATIONS.items():
        parser.add_argument(
            f"-{flag}", dest=operation, action="append", default=[], metavar="ID"
        )
    parser.add_argument("queues", nargs="*", metavar="queue")
    return parser


def _ids(spool: Spool, arguments: list[str], queues: list[str]) -> list[str]:
    ids: list[str] = []
    for argument in arguments:
        if argument == "-":
            ids.extend(line.strip() for line in sys.stdin if line.strip())
        else:
            ids.append(argument)
    if "ALL" not in ids:
        return list(dict.fromkeys(ids))
    if not queues:
        return select_ids(spool, ids)
    chosen: list[str] = []
    for queue in queues:
        chosen.extend(select_ids(spool, ids, all_of=queue))
    return list(dict.fromkeys(chosen))


def _operate(spool: Spool, settings: Settings, operation: str, ids: list[str]) -> int:
    with queue_locked(spool) as have_lock:
        if have_lock:
            changed = [
                apply_to_files(
                    spool,
                    operation,
                    queue_id,
                    myhostname=settings.myhostname,
                    now=time.time(),
                )
                for queue_id in ids
            ]
            return sum(c is not None for c in changed)
    reply = ask_server(spool, {"cmd": operation, "ids": ids})
    if reply is None:
        raise FatalError("queue is locked but no queue manager answers")
    count = reply.get("count", 0)
    return count if isinstance(count, int) else 0


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    unknown = [q for q in args.queues if q not in _QUEUES]
    if unknown:
        print(
            f"postsuper: fatal: invalid directory name: {unknown[0]}", file=sys.stderr
        )
        return EX_USAGE
    if not any(getattr(args, op) for op in _OPERATIONS.values()):
        _parser().print_usage(sys.stderr)
        return EX_USAGE

    settings = load_settings(args.config)
    spool = open_spool(settings)
    for operation in ("delete", "hold", "release", "requeue"):
        arguments = getattr(args, operation)
        if not arguments:
            continue
        ids = _ids(spool, arguments, args.queues)
        count = _operate(spool, settings, operation, ids)
        if count:
            noun = "message" if count == 1 else "messages"
            print(f"postsuper: {_REPORTS[operation]}: {count} {noun}", file=sys.stderr)
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    return run("postsuper", _main, argv)
