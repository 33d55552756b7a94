"""DSNs about internationalised addresses (case 030): IDN domains as
A-labels in the plain report (RFC 3464 fields are ASCII), UTF-8 local
parts in RFC 6533's global report."""

import email
import email.policy

from roost.queue.bounce import FAILED, Notice, make_dsn
from roost.queue.envelope import Envelope, Recipient
from roost.queue.result import RecipientResult

HEADERS = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def _dsn(env, data=HEADERS):
    notices = [
        Notice(r, RecipientResult(r.address, "bounced", "5.1.1", "no such user"))
        for r in env.recipients
    ]
    return make_dsn(
        envelope=env,
        data=data,
        notices=notices,
        action=FAILED,
        myhostname="mx.example.test",
        now=1_800_000_000.0,
    )


def _parts(message):
    parsed = email.message_from_bytes(message, policy=email.policy.SMTPUTF8)
    return parsed, list(parsed.iter_parts())


def test_idn_domains_are_reported_as_a_labels():
    env = Envelope(
        queue_id="4QX7ZK2M",
        mail_from="ann@bücher.example",
        recipients=[Recipient("bo@bücher.test", "rfc822;bo@BÜCHER.test")],
        smtputf8=True,
    )
    dsn_env, message = _dsn(env)
    parsed, parts = _parts(message)
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"] == "ann@xn--bcher-kva.example"
    assert parts[1].get_content_type() == "message/delivery-status"
    status = message.split(b"message/delivery-status\r\n\r\n")[1].split(b"\r\n--")[0]
    assert status.isascii()
    assert b"X-Roost-Sender: rfc822; ann@xn--bcher-kva.example\r\n" in status
    assert b"Final-Recipient: rfc822; bo@xn--bcher-kva.test\r\n" in status
    assert b"Original-Recipient: rfc822; bo@xn--bcher-kva.test\r\n" in status
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert dsn_env.recipients[0].address == "ann@bücher.example"


def test_utf8_local_parts_make_a_global_report():
    env = Envelope(
        queue_id="4QX7ZK2M",
        mail_from="josé@example.org",
        recipients=[Recipient("δοκιμή@x.test", "rfc822;δοκιμή@x.test")],
        smtputf8=True,
    )
    data = "Subject: Grüße\r\n\r\nok\r\n".encode()
    _, message = _dsn(env, data)
    parsed, parts = _parts(message)
    # RFC 6522 3: report-type names the subtype of the second part
    assert parsed.get_param("report-type") == "global-delivery-status"
    assert parts[1].get_content_type() == "message/global-delivery-status"
    assert "Final-Recipient: utf-8; δοκιμή@x.test\r\n".encode() in message
    assert "Original-Recipient: utf-8; δοκιμή@x.test\r\n".encode() in message
    assert "X-Roost-Sender: utf-8; josé@example.org\r\n".encode() in message
    assert parts[2].get_content_type() == "message/global-headers"


def test_8bit_headers_of_legacy_mail_stay_text_rfc822_headers():
    env = Envelope(queue_id="4QX7ZK2M", mail_from="a@example.org")
    env.recipients = [Recipient("b@example.org")]
    _, message = _dsn(env, b"Subject: caf\xe9\r\n\r\nx\r\n")
    _, parts = _parts(message)
    assert parts[1].get_content_type() == "message/delivery-status"
    assert parts[2].get_content_type() == "text/rfc822-headers"
