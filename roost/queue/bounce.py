"""Delivery status notifications: bounces, delay notices, success reports.

A DSN is an RFC 3464 multipart/report (RFC 6522) with three parts: a
human-readable explanation, the message/delivery-status fields, and the
original message's headers (text/rfc822-headers) or, when the sender asked
with RET=FULL (RFC 3461 4.3), the whole message (message/rfc822).

RFC 5321 6.1 / 3.6.3: a DSN is sent from the null reverse-path, so that
no DSN is ever sent about a DSN.  When one of Roost's own bounces cannot
be delivered, a "double bounce" notice goes to 2bounce_notice_recipient
(postmaster); that notice, like any other null-sender mail, is never
bounced again.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence
from dataclasses import dataclass

from roost.delivery.idn import wire_address
from roost.queue.envelope import Envelope, Recipient
from roost.queue.result import RecipientResult

FAILED = "failed"
DELAYED = "delayed"
DELIVERED = "delivered"

_SUBJECTS = {
    FAILED: "Undelivered Mail Returned to Sender",
    DELAYED: "Delayed Mail (still being retried)",
    DELIVERED: "Successful Mail Delivery Report",
}

_INTRO = {
    FAILED: (
        "Your message could not be delivered to one or more recipients.",
        "The reasons are listed below; the report and the headers of your",
        "message are attached.",
    ),
    DELAYED: (
        "Your message has not been delivered to one or more recipients",
        "yet. Delivery is still being retried; you do not need to send it",
        "again. You will be told if it fails for good.",
    ),
    DELIVERED: (
        "Your message was delivered to the recipients listed below, as you",
        "asked when you sent it.",
    ),
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One recipient line of a DSN: the recipient and what happened."""

    recipient: Recipient
    result: RecipientResult


def _ascii_safe(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _typed_address(address: str) -> str:
    """An address for Final-Recipient and its kin: "rfc822; a@b" with the
    domain as A-labels, else RFC 6533 3's "utf-8; ..." (UTF-8 local part),
    which only a message/global-delivery-status may carry."""
    ascii_form = wire_address(address)
    kind = "rfc822" if ascii_form.isascii() else "utf-8"
    return f"{kind}; {_ascii_safe(ascii_form)}"


def _typed_orcpt(orcpt: str) -> str:
    kind, _, address = orcpt.partition(";")
    if kind.strip().lower() == "rfc822":
        return _typed_address(address.strip())
    return _ascii_safe(orcpt)


def header_block(data: bytes) -> bytes:
    """The header section of a message (up to, not including, the blank line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end >= 0:
            return data[: end + len(separator) // 2]
    return data


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _status_fields(
    envelope: Envelope, notices: Sequence[Notice], action: str, reporting_mta: str
) -> list[str]:
    lines = [f"Reporting-MTA: dns; {reporting_mta}"]
    lines.append(f"X-Roost-Queue-ID: {envelope.queue_id}")
    if envelope.dsn_envid:
        lines.append(f"Original-Envelope-Id: {_ascii_safe(envelope.dsn_envid)}")
    if envelope.mail_from:
        lines.append(f"X-Roost-Sender: {_typed_address(envelope.mail_from)}")
    arrival = email.utils.formatdate(envelope.arrival_time, localtime=True)
    lines.append(f"Arrival-Date: {arrival}")
    for notice in notices:
        result = notice.result
        lines.append("")
        lines.append(f"Final-Recipient: {_typed_address(result.address)}")
        if notice.recipient.orcpt:
            lines.append(f"Original-Recipient: {_typed_orcpt(notice.recipient.orcpt)}")
        lines.append(f"Action: {action}")
        lines.append(f"Status: {result.dsn}")
        if result.remote_mta:
            lines.append(f"Remote-MTA: dns; {_ascii_safe(result.remote_mta)}")
        diagnostic = result.diagnostic or f"X-Roost; {result.reason}"
        lines.append(f"Diagnostic-Code: {_ascii_safe(diagnostic)}")
    return lines


def make_dsn(
    *,
    envelope: Envelope,
    data: bytes,
    notices: Sequence[Notice],
    action: str,
    myhostname: str,
    to: str | None = None,
    kind: str = "bounce",
    now: float | None = None,
) -> tuple[Envelope, bytes]:
    """Build a DSN about envelope for notices; returns (envelope, message).

    The DSN goes to the original sender unless to is given (double
    bounces go to the postmaster); its reverse-path is always null.
    """
    now = time.time() if now is None else now
    recipient = envelope.mail_from if to is None else to
    boundary = f"{envelope.queue_id}.{int(now)}/{myhostname}"
    full = envelope.dsn_ret == "FULL" and action != DELAYED
    subject = _SUBJECTS[action]
    if kind == "2bounce":
        subject = f"Postmaster Copy: {subject}"

    fields = _status_fields(envelope, notices, action, myhostname)
    # RFC 6533 6: a UTF-8 address goes in message/global-delivery-status,
    # and UTF-8 headers of an SMTPUTF8 message as message/global-headers
    # (message/global when whole, RFC 6532 3.7)
    is_global = not all(line.isascii() for line in fields)
    status_type = "global-delivery-status" if is_global else "delivery-status"

    head = [
        f"Date: {email.utils.formatdate(now, localtime=True)}",
        f"From: Mail Delivery System <MAILER-DAEMON@{myhostname}>",
        f"To: {_ascii_safe(wire_address(recipient))}",
        f"Subject: {subject}",
        # RFC 3834 5: automatic replies are marked so nobody answers them
        "Auto-Submitted: auto-replied",
        f"Message-ID: <{envelope.queue_id}.{int(now)}.dsn@{myhostname}>",
        "MIME-Version: 1.0",
        f"Content-Type: multipart/report; report-type={status_type};",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]
    text = [
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"This is the mail system at host {myhostname}.",
        "",
        *_INTRO[action],
        "",
    ]
    for notice in notices:
        text.append(f"<{_ascii_safe(notice.result.address)}>: {notice.result.reason}")
    text.append("")
    status = [
        f"--{boundary}",
        "Content-Description: Delivery report",
        f"Content-Type: message/{status_type}",
        "",
        *fields,
        "",
    ]
    utf8_headers = envelope.smtputf8 and not header_block(data).isascii()
    if full:
        original_type = "message/global" if utf8_headers else "message/rfc822"
        original = [
            f"--{boundary}",
            "Content-Description: Undelivered Message",
            f"Content-Type: {original_type}",
            "",
        ]
        attached = _crlf(data)
    else:
        original_type = (
            "message/global-headers" if utf8_headers else "text/rfc822-headers"
        )
        original = [
            f"--{boundary}",
            "Content-Description: Undelivered Message Headers",
            f"Content-Type: {original_type}",
            "",
        ]
        attached = _crlf(header_block(data))
    if not attached.endswith(b"\r\n"):
        attached += b"\r\n"

    def block(lines: list[str]) -> bytes:
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    message = (
        block(head + text + status + original)
        + attached
        + f"\r\n--{boundary}--\r\n".encode()
    )
    dsn_envelope = Envelope(
        mail_from="",
        recipients=[Recipient(recipient)],
        arrival_time=now,
        kind=kind,
        body_type="8BITMIME",
        smtputf8=envelope.smtputf8,
    )
    return dsn_envelope, message
