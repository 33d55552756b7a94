"""Pickup: move one maildrop file into the queue, as postfix's pickup(8).

The queue manager calls this for every file `sendmail` drops; postsuper
calls it too when it must hold or requeue a message that is still in the
maildrop (no server running), so the message has one life either way.
The maildrop name becomes the queue id, so a crash after the enqueue but
before the unlink cannot queue the message twice.
"""

from __future__ import annotations

import email.utils
import logging
import os

from roost.queue.envelope import QueueFileError, decode_queue_file
from roost.queue.spool import Spool, fsync_dir

log = logging.getLogger("roost.queue")
# postfix's pickup(8) logs "QID: uid=N from=<...>" under its own name, and
# pflogsumm counts a message as received only from smtpd or pickup lines
pickup_log = logging.getLogger("roost.pickup")


def pick_up(spool: Spool, name: str, *, myhostname: str, now: float) -> str | None:
    """Queue maildrop file name durably and unlink it; returns the queue id.

    None when the file is gone (picked up already), was a copy of a
    message queued before a crash, or is corrupt (then it is moved aside
    to .corrupt.NAME).  Raises OSError when the disk fails; the file then
    stays for the next try.  Blocking: call it from a thread.
    """
    path = spool.maildrop / name
    try:
        envelope, data = decode_queue_file(path.read_bytes())
    except FileNotFoundError:
        return None
    except QueueFileError as exc:
        log.warning("maildrop %s: %s; moved aside", name, exc)
        os.rename(path, spool.maildrop / f".corrupt.{name}")
        return None

    queue_id = name
    if spool.exists(name):
        if spool.read_envelope(name).pickup_name == name:
            _unlink(spool, name)
            return None
        queue_id = spool.new_queue_id()
    envelope.queue_id = queue_id
    envelope.pickup_name = name
    envelope.size = 0
    stamp = email.utils.formatdate(now, localtime=True)
    received = (
        f"Received: by {myhostname} (Roost, from userid "
        f"{envelope.local_uid})\r\n\tid {queue_id}; {stamp}\r\n"
    ).encode()
    spool.enqueue_now(envelope, received + data)
    _unlink(spool, name)
    pickup_log.info(
        "%s: uid=%d from=<%s>", queue_id, envelope.local_uid, envelope.mail_from
    )
    return queue_id


def _unlink(spool: Spool, name: str) -> None:
    os.unlink(spool.maildrop / name)
    fsync_dir(spool.maildrop)
