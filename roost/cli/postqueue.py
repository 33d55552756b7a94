"""postqueue and mailq: list, flush and deliver the queue, as postfix's.

    postqueue [-c PATH] -p          mailq format (also `mailq [-C PATH]`)
    postqueue [-c PATH] -j          one JSON object per message
    postqueue [-c PATH] -f          retry all deferred mail now
    postqueue [-c PATH] -i ID       retry one message now
    postqueue [-c PATH] -s DOMAIN   retry mail for DOMAIN now

With no server running, -f/-i/-s mark the messages due, and they go at
the next start.
"""

from __future__ import annotations

import argparse
import sys

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
from roost.queue import Spool
from roost.queue.showq import entry_json, format_mailq


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("-c", dest="config", metavar="PATH", default=None)
    if prog == "mailq":
        # mailq is sendmail -bp, and postfix's sendmail names the
        # configuration directory with -C
        parser.add_argument("-C", dest="config", metavar="PATH", default=None)
    actions = parser.add_mutually_exclusive_group()
    actions.add_argument("-p", action="store_true", help="list the queue")
    actions.add_argument("-j", action="store_true", help="list the queue as JSON")
    actions.add_argument("-f", action="store_true", help="flush the queue")
    actions.add_argument("-i", metavar="ID", help="deliver one message now")
    actions.add_argument("-s", metavar="DOMAIN", help="flush mail for DOMAIN")
    parser.add_argument("-v", action="count", default=0, help="ignored")
    return parser


def _active_ids(spool: Spool) -> frozenset[str]:
    reply = ask_server(spool, {"cmd": "active"})
    if reply is None:
        return frozenset()
    ids = reply.get("ids", [])
    return frozenset(str(i) for i in ids) if isinstance(ids, list) else frozenset()


def list_queue(spool: Spool, *, as_json: bool) -> str:
    entries = list(spool.scan(_active_ids(spool)))
    if as_json:
        return "".join(entry_json(e) + "\n" for e in entries)
    return format_mailq(entries)


def _due_now(spool: Spool, ids: list[str] | None, domain: str | None) -> int:
    # no server: make the messages due, so the next start sends them first
    count = 0
    for queue_id in ids if ids is not None else spool.queue_ids():
        if not spool.exists(queue_id):
            continue
        if domain is not None:
            suffix = "@" + domain.lower()
            addresses = [
                r.address.lower() for r in spool.read_envelope(queue_id).recipients
            ]
            if not any(a.endswith(suffix) for a in addresses):
                continue
        state = spool.read_state(queue_id)
        if state.attempts and not state.hold:
            state.next_attempt = 0.0
            spool.write_state_now(queue_id, state)
            count += 1
    return count


def _flush(spool: Spool, ids: list[str] | None, domain: str | None) -> None:
    if ids is not None:
        payload: dict[str, object] = {"cmd": "deliver", "ids": ids}
    else:
        payload = {"cmd": "flush"}
        if domain is not None:
            payload["domain"] = domain
    with queue_locked(spool) as have_lock:
        if have_lock:
            _due_now(spool, ids, domain)
            return
    if ask_server(spool, payload) is None:
        raise FatalError("Cannot flush mail queue - mail system is down")


def _main(argv: list[str] | None, prog: str = "postqueue") -> int:
    args = _parser(prog).parse_args(argv)
    settings = load_settings(args.config)
    spool = open_spool(settings)
    if args.j:
        sys.stdout.write(list_queue(spool, as_json=True))
    elif args.f:
        _flush(spool, None, None)
    elif args.i:
        _flush(spool, [args.i], None)
    elif args.s:
        _flush(spool, None, args.s)
    elif args.p or prog == "mailq":
        sys.stdout.write(list_queue(spool, as_json=False))
    else:
        _parser(prog).print_usage(sys.stderr)
        return EX_USAGE
    sys.stdout.flush()
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    return run("postqueue", _main, argv)


def mailq_main(argv: list[str] | None = None) -> int:
    return run("mailq", lambda a: _main(a, "mailq"), argv)
