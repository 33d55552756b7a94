"""The envelope of a queued message and its on-disk record.

A queue file is ``ROOST-QUEUE 1\\n``, one line of JSON (the envelope), then
the message bytes exactly as enqueued (CRLF line ends, our Received header
first).  The file never changes after it is written; delivery progress
lives in a small separate state file (see spool.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MAGIC = b"ROOST-QUEUE 1\n"

# RFC 3461 4.1: without NOTIFY the MTA acts as if FAILURE (and, at its
# choice, DELAY) were given; postfix, and Roost, send both.
DEFAULT_NOTIFY: tuple[str, ...] = ("FAILURE", "DELAY")


class QueueFileError(ValueError):
    """A queue file that cannot be read as one (truncated, foreign)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient with its RFC 3461 DSN parameters.

    ``orcpt`` is the ORCPT value as given (``rfc822;addr``) or None;
    ``notify`` is empty when the client sent no NOTIFY (default applies).
    """

    address: str
    orcpt: str | None = None
    notify: tuple[str, ...] = ()

    def wants(self, kind: str) -> bool:
        """Whether a DSN of kind SUCCESS / FAILURE / DELAY is wanted."""
        if "NEVER" in self.notify:
            return False
        return kind in (self.notify or DEFAULT_NOTIFY)


@dataclass(slots=True)
class Envelope:
    """Everything about a message except its bytes.

    ``mail_from`` is the reverse-path without brackets, "" for the null
    sender.  ``kind`` is "" for ordinary mail, "bounce" for a DSN Roost
    made and "2bounce" for a double-bounce notice (never bounced again).
    """

    queue_id: str = ""
    mail_from: str = ""
    recipients: list[Recipient] = field(default_factory=list)
    arrival_time: float = 0.0
    helo: str = ""
    client_ip: str = ""
    client_hostname: str = ""
    sasl_username: str = ""
    size: int = 0
    body_type: str = ""
    smtputf8: bool = False
    dsn_ret: str | None = None
    dsn_envid: str | None = None
    kind: str = ""
    # set on mail that came through the maildrop (sendmail): the local
    # user id, and the maildrop file it was picked up from
    local_uid: int = -1
    pickup_name: str = ""

    def to_json(self) -> bytes:
        record = asdict(self)
        record["recipients"] = [
            {"address": r.address, "orcpt": r.orcpt, "notify": list(r.notify)}
            for r in self.recipients
        ]
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, text: bytes) -> Envelope:
        try:
            record: dict[str, Any] = json.loads(text)
            recipients = [
                Recipient(r["address"], r.get("orcpt"), tuple(r.get("notify", ())))
                for r in record.pop("recipients")
            ]
            known = {k: v for k, v in record.items() if k in _FIELDS}
            return cls(recipients=recipients, **known)
        except (ValueError, KeyError, TypeError) as exc:
            raise QueueFileError(f"bad envelope: {exc}") from exc


_FIELDS = set(Envelope.__dataclass_fields__) - {"recipients"}


def encode_queue_file(envelope: Envelope, data: bytes) -> bytes:
    """The bytes of a queue file for envelope and message data."""
    return MAGIC + envelope.to_json() + b"\n" + data


def decode_queue_file(raw: bytes) -> tuple[Envelope, bytes]:
    """Split a queue file into (envelope, message); raises QueueFileError."""
    if not raw.startswith(MAGIC):
        raise QueueFileError("not a Roost queue file")
    end = raw.find(b"\n", len(MAGIC))
    if end < 0:
        raise QueueFileError("truncated queue file")
    envelope = Envelope.from_json(raw[len(MAGIC) : end])
    return envelope, raw[end + 1 :]


def read_envelope(path: str) -> Envelope:
    """Read only the envelope of the queue file at path."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
        if head != MAGIC:
            raise QueueFileError("not a Roost queue file")
        line = f.readline()
    if not line.endswith(b"\n"):
        raise QueueFileError("truncated queue file")
    return Envelope.from_json(line[:-1])
