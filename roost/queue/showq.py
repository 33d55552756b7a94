"""Queue listings in postfix's formats: `mailq` text and `postqueue -j`.

The text layout is postfix's short-queue-id form, column for column, so
scripts that parse postfix's mailq keep working: a heading, per message
the id (with ``*`` active, ``!`` on hold, ``#`` forced to expire), size,
arrival time and sender, then each pending recipient indented to the
sender column, with a ``(reason)`` line right-aligned to column 78
before the recipients it applies to; a blank line between messages and
``-- N Kbytes in M Requests.`` at the end, or ``Mail queue is empty``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from roost.queue.spool import QueueEntry

_HEADINGS = (
    "-Queue ID-",
    "--Size--",
    "----Arrival Time----",
    "-Sender/Recipient-------",
)
_REASON_WIDTH = 76
# postfix shows the null sender under this name (its empty_address_recipient)
EMPTY_SENDER = "MAILER-DAEMON"


def _string_line(a: str, b: str, c: str, d: str) -> str:
    return f"{a:<11} {b:>7} {c:<20} {d}"


def pending_recipients(entry: QueueEntry) -> list[tuple[str, str]]:
    """(address, delay reason) for recipients not yet done."""
    return [
        (r.address, entry.state.reasons.get(i, ""))
        for i, r in enumerate(entry.envelope.recipients)
        if i not in entry.state.done
    ]


def _status_mark(entry: QueueEntry) -> str:
    mark = {"active": "*", "hold": "!"}.get(entry.queue_name, "")
    return mark + ("#" if entry.state.forced_expire else "")


def format_entry(entry: QueueEntry) -> list[str]:
    """The lines of one message in mailq's layout."""
    env = entry.envelope
    arrival = time.asctime(time.localtime(env.arrival_time))[:20]
    size = env.size or entry.file_size
    sender = env.mail_from or EMPTY_SENDER
    lines = [
        f"{entry.queue_id + _status_mark(entry):<11} {size:>7} {arrival:<20} {sender}"
    ]
    saved_reason = ""
    for address, reason in pending_recipients(entry):
        if reason != saved_reason:
            saved_reason = reason
            shown = reason or "reason unavailable"
            padding = max(0, _REASON_WIDTH - len(shown))
            lines.append(" " * padding + f"({shown})")
        lines.append(_string_line("", "", "", address))
    return lines


def format_mailq(entries: Iterable[QueueEntry]) -> str:
    """The whole mailq / postqueue -p output."""
    out: list[str] = []
    count = 0
    total = 0
    for entry in entries:
        out.append("" if count else _string_line(*_HEADINGS))
        out.extend(format_entry(entry))
        count += 1
        total += entry.envelope.size or entry.file_size
    if not count:
        return "Mail queue is empty\n"
    plural = "" if count == 1 else "s"
    out.append("")
    out.append(f"-- {total // 1024} Kbytes in {count} Request{plural}.")
    return "\n".join(out) + "\n"


def entry_json(entry: QueueEntry) -> str:
    """One message as postqueue -j prints it (one JSON object)."""
    recipients = []
    for address, reason in pending_recipients(entry):
        item = {"address": address}
        if reason:
            item["delay_reason"] = reason
        recipients.append(item)
    record = {
        "queue_name": entry.queue_name,
        "queue_id": entry.queue_id,
        "arrival_time": int(entry.envelope.arrival_time),
        "message_size": entry.envelope.size or entry.file_size,
        "forced_expire": entry.state.forced_expire,
        "sender": entry.envelope.mail_from or EMPTY_SENDER,
        "recipients": recipients,
    }
    return json.dumps(record, ensure_ascii=False)
