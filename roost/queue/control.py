"""Queue control: the operations of postsuper/postqueue and the socket.

The running server holds the queue lock (pid/master.lock) and listens on
public/qmgr.sock.  A tool first tries to take the lock: when it gets it,
no server runs and the tool changes the files itself while holding it;
otherwise it sends one JSON request line to the socket and reads one JSON
reply line, and the server does the work (so nothing changes under a
delivery in progress).

Requests: {"cmd": "wakeup"} (look at the maildrop), {"cmd": "flush"},
{"cmd": "flush", "domain": D}, {"cmd": "deliver", "ids": [...]},
{"cmd": "active"}, and {"cmd": OP, "ids": [...]} with OP one of delete,
hold, release, requeue.  Replies carry "ok" and "count" or "ids".
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable

from roost.queue.envelope import QueueFileError
from roost.queue.pickup import pick_up
from roost.queue.queueid import is_queue_id
from roost.queue.spool import Spool

OPERATIONS = ("delete", "hold", "release", "requeue")
_REPLY_MAX_BYTES = 16 * 1024 * 1024


class ControlError(Exception):
    """The server answered a control request with an error."""


def apply_to_files(
    spool: Spool, operation: str, queue_id: str, *, myhostname: str, now: float
) -> str | None:
    """Do operation on queue_id's files directly; the queue id it changed.

    None when there was nothing to change.  An id may name a message
    still in the maildrop, as mailq lists it: delete unlinks the file,
    hold and requeue first pick it up into the queue (see pickup.py;
    the returned id is then the new queue id, nearly always the same).
    Call only while holding the queue lock (no server running), or from
    the server for a message that is not being delivered, while no
    pickup runs.
    """
    if not is_queue_id(queue_id):
        return None
    if operation == "delete":
        return queue_id if _delete(spool, queue_id) else None
    if not spool.exists(queue_id):
        if operation == "release" or not spool.in_maildrop(queue_id):
            return None
        picked = pick_up(spool, queue_id, myhostname=myhostname, now=now)
        if picked is None:
            return None
        queue_id = picked
    state = spool.read_state(queue_id)
    if operation == "hold":
        if state.hold:
            return None
        state.hold = True
    elif operation == "release":
        if not state.hold:
            return None
        state.hold = False
        state.next_attempt = 0.0
    elif operation == "requeue":
        state.hold = False
        state.next_attempt = 0.0
    else:
        raise ValueError(f"unknown queue operation {operation!r}")
    spool.write_state_now(queue_id, state)
    return queue_id


def _delete(spool: Spool, queue_id: str) -> bool:
    # A maildrop file of the same name is the same message when the queued
    # one was picked up from it (a crash came before the unlink): it goes
    # too, or pickup would queue it again.  Otherwise the names collided.
    if not spool.exists(queue_id):
        return spool.remove_maildrop(queue_id)
    try:
        is_twin = spool.read_envelope(queue_id).pickup_name == queue_id
    except (OSError, QueueFileError):
        is_twin = False
    removed = spool.remove_now(queue_id)
    if is_twin:
        spool.remove_maildrop(queue_id)
    return removed


def select_ids(
    spool: Spool, ids: Iterable[str], *, all_of: str | None = None
) -> list[str]:
    """Expand postsuper's ID arguments.

    ids may contain "ALL"; all_of names a queue ("deferred", "hold",
    "active", "maildrop") to restrict ALL to, as in `postsuper -d ALL
    deferred`.  Unrestricted ALL includes the maildrop: unlike postfix's
    pickup, which empties it within a second, ours keeps files there
    while no server runs, and mailq lists them.
    """
    wanted = [i for i in ids if i != "ALL"]
    if "ALL" in ids:
        for queue_id in spool.queue_ids():
            name = spool.queue_name(spool.read_state(queue_id))
            if all_of is None or name == all_of:
                wanted.append(queue_id)
        if all_of in (None, "maildrop"):
            wanted.extend(spool.maildrop_names())
    return list(dict.fromkeys(wanted))


def request(
    spool: Spool, payload: dict[str, object], timeout_s: float = 30.0
) -> dict[str, object] | None:
    """Send one request to the running server; None when none listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(spool.socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > _REPLY_MAX_BYTES:
                raise ControlError("reply too long")
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ControlError("malformed reply from the queue manager") from exc
    if not isinstance(reply, dict):
        raise ControlError("malformed reply from the queue manager")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request refused")))
    return reply
