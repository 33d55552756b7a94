"""The SMTP server core, driven by bytes."""

from __future__ import annotations

import pytest

from roost.protocols.smtp import events as ev
from roost.protocols.smtp import reply as r
from roost.protocols.smtp.server import ServerConnection, State, UsageError

from .server_driver import Driver

EHLO = b"EHLO client.example.org\r\n"
MAIL = b"MAIL FROM:<sender@example.org>\r\n"
RCPT = b"RCPT TO:<alice@example.test>\r\n"


def in_data(**kw: object) -> Driver:
    d = Driver(**kw)
    for line in (EHLO, MAIL, RCPT, b"DATA\r\n"):
        d.feed(line)
    assert d.core.state is State.DATA
    d.take_output()
    return d


def test_greeting_then_ehlo_transcript() -> None:
    d = Driver()
    d.feed(EHLO)
    assert d.take_output() == (
        b"220 mx.example.test ESMTP\r\n"
        b"250-mx.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    )
    assert d.events == [ev.Ehlo("client.example.org")]


def test_no_event_before_greeting() -> None:
    core = ServerConnection(hostname="mx.example.test")
    core.receive_data(EHLO)
    assert core.next_event() is ev.NEED_DATA


def test_issue_014_command_order() -> None:
    # RFC 5321 4.1.4: MAIL needs EHLO; RCPT needs MAIL; DATA needs RCPT
    d = Driver()
    d.feed(MAIL)
    d.feed(RCPT)
    d.feed(b"NOOP\r\n")
    d.feed(EHLO)
    d.feed(b"DATA\r\n")
    d.feed(MAIL)
    d.feed(b"MAIL FROM:<other@example.org>\r\n")
    assert d.codes() == [220, 503, 503, 250, 250, 503, 250, 503]
    out = d.take_output()
    assert b"503 5.5.1 Error: send HELO/EHLO first" in out
    assert b"503 5.5.1 Error: need MAIL command" in out
    assert b"503 5.5.1 Error: need RCPT command" in out
    assert b"503 5.5.1 Error: nested MAIL command" in out
    assert d.core.state is State.MAIL


def test_issue_014_pregreet_pipelining_is_refused() -> None:
    # RFC 2920 3.1: no pipelining before PIPELINING is offered (postfix
    # smtpd_forbid_unauth_pipelining): one 554, then the session ends
    d = Driver()
    d.feed(EHLO + MAIL + RCPT)
    assert d.codes() == [220, 554]
    assert b"554 5.5.0" in d.out
    assert d.core.is_closed
    assert not any(isinstance(e, ev.MailFrom) for e in d.events)


def test_data_before_the_greeting_is_refused() -> None:
    d = Driver(greet=False)
    d.core.receive_data(EHLO)
    d.out += d.core.send(r.Reply.of(220, None, "mx.example.test ESMTP"))
    d.run()
    assert d.codes() == [220, 554]


def test_pipelining_after_ehlo_is_fine() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL + RCPT + b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert d.codes() == [220, 250, 250, 250, 250, 354]


def test_pipelining_after_helo_is_refused() -> None:
    d = Driver()
    d.feed(b"HELO client.example.org\r\n")
    d.feed(MAIL + RCPT)
    assert d.codes() == [220, 250, 554]


def test_data_sent_before_354_is_refused() -> None:
    # RFC 2920 3.1: DATA ends a group; the text waits for the 354
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL + RCPT + b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    assert d.codes() == [220, 250, 250, 250, 554]
    assert d.core.is_closed


def test_whole_transaction_and_message() -> None:
    d = in_data()
    d.feed(b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n")
    received = [e for e in d.events if isinstance(e, ev.DataReceived)]
    assert received == [ev.DataReceived(b"Subject: hi\r\n\r\n.dot\r\nbody\r\n", 27)]
    assert d.codes() == [250]
    assert d.core.state is State.READY


@pytest.mark.parametrize("separator", [b"\n.\r\n", b"\n.\n", b"\r\n.\n"])
def test_issue_001_smuggling_separators_do_not_end_data(separator: bytes) -> None:
    # RFC 5321 4.1.1.4 / 2.3.8: only <CRLF>.<CRLF> ends the data
    d = in_data()
    blob = (
        b"From: news@example.org\r\nSubject: first\r\n\r\nhello"
        + separator
        + b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.test>\r\n"
        b"DATA\r\nFrom: ceo@example.org\r\nSubject: smuggled\r\n\r\npay now\r\n.\r\n"
    )
    d.feed(blob)
    assert d.codes() == [250]
    messages = [e for e in d.events if isinstance(e, ev.DataReceived)]
    assert len(messages) == 1
    assert not any(isinstance(e, ev.MailFrom) for e in d.events[-1:])
    body = messages[0].data
    assert b"MAIL FROM:<ceo@example.org>\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert b"\r" not in body.replace(b"\r\n", b"")


def test_bare_lf_lines_are_normalised() -> None:
    d = in_data()
    d.feed(b"a\nb\r\n.\r\n")
    (msg,) = [e for e in d.events if isinstance(e, ev.DataReceived)]
    assert msg.data == b"a\r\nb\r\n"
    assert msg.has_bare_lf


def test_stray_cr_becomes_space() -> None:
    d = in_data()
    d.feed(b"a\rb\r\r\n.\r\n")
    (msg,) = [e for e in d.events if isinstance(e, ev.DataReceived)]
    assert msg.data == b"a b \r\n"


def test_issue_004_line_of_1000_octets_is_kept() -> None:
    # RFC 5321 4.5.3.1.6: a 1000-octet text line MUST be accepted
    d = in_data()
    d.feed(b"Subject: ok\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")
    (msg,) = [e for e in d.events if isinstance(e, ev.DataReceived)]
    assert msg.data.endswith(b"a" * 998 + b"\r\n")


def test_issue_004_long_line_then_commands_in_body() -> None:
    # one reply, after the end of data; RSET/QUIT in the body are text
    d = in_data()
    d.feed(b"Subject: long\r\n\r\n" + b"b" * 5000 + b"\r\nRSET\r\nQUIT\r\n")
    assert d.take_output() == b""
    d.feed(b".\r\n")
    assert d.codes() == [250]
    assert not d.core.is_closed


def test_issue_004_huge_line_without_newline_is_bounded() -> None:
    d = in_data(max_message_bytes=100_000)
    for _ in range(64):
        d.feed(b"c" * 65536)
        assert d.core.pending_bytes <= 65536
    assert d.take_output() == b""
    d.feed(b"\r\n.\r\n")
    assert d.codes() == [552]
    assert b"552 5.3.4" in d.out


def test_issue_011_size_enforced_during_data() -> None:
    d = in_data(max_message_bytes=1_048_576)
    line = b"x" * 76 + b"\r\n"
    for _ in range(55):
        d.feed(line * 1000)
    d.feed(b".\r\n")
    assert d.codes() == [552]
    assert not any(isinstance(e, ev.DataReceived) for e in d.events)
    d.take_output()
    d.feed(b"NOOP\r\n")
    assert d.codes() == [250]
    assert d.core.state is State.READY


def test_issue_005_nul_in_data_is_refused_after_the_end() -> None:
    d = in_data()
    d.feed(b"Subject: nul\r\n\r\nbefore\x00after\r\nsecond line\r\n.\r\n")
    assert d.codes() == [550]
    assert b"550 5.6.0" in d.out


def test_issue_005_nul_in_command() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(b"MAIL FROM:<al\x00ice@example.org>\r\n")
    assert d.codes()[-1] == 501
    d.feed(b"NOOP\r\n")
    assert d.codes()[-1] == 250


def test_overlong_command_line_is_refused_once() -> None:
    # RFC 5321 4.5.3.1.4: 512 octets with CRLF
    d = Driver()
    d.feed(EHLO)
    d.feed(b"MAIL FROM:<sender@example.org> XYZ=" + b"x" * 4000 + b"\r\n")
    assert d.codes() == [220, 250, 500]
    assert b"500 5.5.0" in d.out
    d.feed(b"NOOP\r\n")
    assert d.codes()[-1] == 250


def test_overlong_line_in_pieces_is_discarded_as_it_arrives() -> None:
    d = Driver()
    d.feed(EHLO)
    for _ in range(100):
        d.feed(b"y" * 1000)
        assert d.core.pending_bytes <= 1000
    d.feed(b"\r\nNOOP\r\n")
    assert d.codes() == [220, 250, 500, 250]


def test_line_of_exactly_512_octets_is_a_command() -> None:
    d = Driver()
    d.feed(EHLO)
    line = b"NOOP " + b"z" * (512 - 7) + b"\r\n"
    assert len(line) == 512
    d.feed(line)
    assert d.codes()[-1] == 250
    d.feed(b"NOOP " + b"z" * (512 - 6) + b"\r\n")
    assert d.codes()[-1] == 500


def test_unknown_commands_and_error_limit() -> None:
    d = Driver()
    d.feed(EHLO)
    for _ in range(19):
        d.feed(b"BOGUS\r\n")
    assert d.codes()[-1] == 500
    assert not d.core.is_closed
    d.feed(b"BOGUS\r\n")
    assert d.codes()[-2:] == [500, 421]
    assert d.core.is_closed
    assert d.feed(b"NOOP\r\n") == [ev.ConnectionClosed()]


def test_rset_and_quit() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL)
    d.feed(b"RSET\r\n")
    assert d.core.state is State.READY
    d.feed(b"RSET x\r\n")
    assert d.codes()[-1] == 501
    d.feed(b"QUIT\r\n")
    assert d.codes()[-1] == 221
    assert d.core.is_closed


def test_ehlo_inside_a_transaction_resets_it() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL)
    d.feed(EHLO)
    assert d.core.state is State.READY
    d.feed(MAIL)
    assert d.codes()[-1] == 250


def test_starttls_discards_pipelined_plaintext() -> None:
    # case 003, RFC 3207 4.2: nothing sent before the handshake counts
    d = Driver()
    d.feed(EHLO)
    d.feed(b"STARTTLS\r\nRSET\r\n")
    assert d.codes() == [220, 250, 220]
    assert d.core.discarded_after_starttls == len(b"RSET\r\n")
    assert d.core.is_tls
    assert d.core.state is State.INIT
    d.feed(MAIL)
    assert d.codes()[-1] == 503


def test_starttls_twice_is_refused() -> None:
    d = Driver(is_tls=True)
    d.feed(EHLO)
    d.feed(b"STARTTLS\r\n")
    assert d.codes()[-1] == 554


def test_auth_exchange_lines_are_responses() -> None:
    d = Driver()
    d.feed(EHLO)
    d.feed(b"AUTH PLAIN\r\n")
    assert d.core.state is State.AUTH
    d.feed(b"AGFsaWNlAHB3\r\n")
    assert d.events[-1] == ev.AuthResponse(b"AGFsaWNlAHB3")
    assert d.core.is_authenticated
    d.feed(b"AUTH PLAIN x\r\n")
    assert d.codes()[-1] == 503


def test_auth_line_may_be_long() -> None:
    # RFC 4954 4: 12288 octets for AUTH lines
    d = Driver()
    d.feed(EHLO)
    d.feed(b"AUTH PLAIN " + b"A" * 2000 + b"\r\n")
    assert isinstance(d.events[-1], ev.Auth)


def test_auth_cancel() -> None:
    def refuse_cancel(event: ev.Event) -> r.Reply:
        if isinstance(event, ev.AuthResponse):
            assert event.is_cancelled
            return r.AUTH_ABORTED
        from .server_driver import accept_all

        return accept_all(event)

    d = Driver(refuse_cancel)
    d.feed(EHLO)
    d.feed(b"AUTH LOGIN\r\n")
    d.feed(b"*\r\n")
    assert d.codes()[-1] == 501
    assert not d.core.is_authenticated
    assert d.core.state is State.READY


def test_peer_close_mid_data() -> None:
    d = in_data()
    d.feed(b"Subject: x\r\n")
    assert d.feed(b"") == [ev.ConnectionClosed()]


def test_answer_before_next_event_is_enforced() -> None:
    core = ServerConnection(hostname="mx.example.test")
    core.send(r.Reply.of(220, None, "hi"))
    core.receive_data(EHLO)
    core.next_event()
    with pytest.raises(UsageError):
        core.next_event()


def test_421_any_time_closes() -> None:
    d = Driver()
    d.out += d.core.send(r.Reply.of(421, "4.4.2", "timeout"))
    assert d.core.is_closed


def test_postmaster_without_domain() -> None:
    # RFC 5321 4.5.1
    d = Driver()
    d.feed(EHLO)
    d.feed(MAIL)
    d.feed(b"RCPT TO:<Postmaster>\r\n")
    assert d.events[-1].address == "postmaster"  # type: ignore[union-attr]


def test_expn_is_not_implemented() -> None:
    d = Driver()
    d.feed(b"EXPN staff\r\n")
    assert d.codes()[-1] == 502


def test_helo_needs_an_argument() -> None:
    d = Driver()
    d.feed(b"EHLO\r\n")
    assert d.codes()[-1] == 501
    assert d.core.state is State.INIT


def test_bare_addresses_without_angle_brackets() -> None:
    # postfix strict_rfc821_envelopes = no (the default): RFC 5321 4.1.2
    # wants <path>, but clients that omit the brackets are accepted
    d = Driver()
    d.feed(EHLO)
    d.feed(b"MAIL FROM:sender@example.org SIZE=10\r\n")
    d.feed(b"RCPT TO: alice@example.test NOTIFY=NEVER\r\n")
    d.feed(b"RCPT TO:postmaster\r\n")
    d.feed(b"RCPT TO:\r\n")
    d.feed(b"RCPT TO:a>b@example.test\r\n")
    assert d.codes() == [220, 250, 250, 250, 250, 501, 501]
    mail, rcpt, postmaster = d.events[1:4]
    assert isinstance(mail, ev.MailFrom)
    assert isinstance(rcpt, ev.RcptTo)
    assert (mail.address, mail.params.size) == ("sender@example.org", 10)
    assert (rcpt.address, rcpt.params.notify) == ("alice@example.test", ("NEVER",))
    assert isinstance(postmaster, ev.RcptTo)
    assert postmaster.address == "postmaster"


def test_strict_rfc821_envelopes_wants_brackets() -> None:
    d = Driver(strict_rfc821_envelopes=True)
    d.feed(EHLO)
    d.feed(b"MAIL FROM:sender@example.org\r\n")
    d.feed(MAIL)
    d.feed(b"RCPT TO:alice@example.test\r\n")
    d.feed(RCPT)
    assert d.codes() == [220, 250, 501, 250, 501, 250]
    assert b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n" in d.out
    assert b"501 5.5.4 Syntax: RCPT TO:<address>\r\n" in d.out
