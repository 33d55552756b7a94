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

from roost.queue.queueid import is_queue_id
from roost.queue.spool import Spool

OPERATIONS = ("delete", "hold", "release", "requeue")
_REPLY_MAX_BYTES = 16 * 1024 * 1024


class ControlError(Exception):
    """The server answered a control request with an error."""


def apply_to_files(spool: Spool, operation: str, queue_id: str) -> bool:
    """Do operation on queue_id's files directly; False when it is absent.

    Call only while holding the queue lock (no server running) or from the
    server itself for a message that is not being delivered.
    """
    if not is_queue_id(queue_id) or not spool.exists(queue_id):
        return False
    if operation == "delete":
        return spool.remove_now(queue_id)
    state = spool.read_state(queue_id)
    if operation == "hold":
        if state.hold:
            return False
        state.hold = True
    elif operation == "release":
        if not state.hold:
            return False
        state.hold = False
        state.next_attempt = 0.0
    elif operation == "requeue":
        state.hold = False
        state.next_attempt = 0.0
    else:
        raise ValueError(f"unknown queue operation {operation!r}")
    spool.write_state_now(queue_id, state)
    return True


def select_ids(
    spool: Spool, ids: Iterable[str], *, all_of: str | None = None
) -> list[str]:
    """Expand postsuper's ID arguments.

    ids may contain "ALL"; all_of names a queue ("deferred", "hold",
    "active") to restrict ALL to, as in `postsuper -d ALL deferred`.
    """
    wanted = [i for i in ids if i != "ALL"]
    if "ALL" in ids:
        for queue_id in spool.queue_ids():
            name = spool.queue_name(spool.read_state(queue_id))
            if all_of is None or name == all_of:
                wanted.append(queue_id)
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
