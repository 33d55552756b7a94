"""The sans-IO SMTP/LMTP client core, driven by bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocols.smtp.client import (
    Capabilities,
    ClientError,
    Closed,
    Greeted,
    MessageCommand,
    PeerProtocolError,
    Phase,
    RecipientCommand,
    Refused,
    Reply,
    ReplyParser,
    SmtpClient,
    TlsReady,
    TransactionDone,
    dot_stuff,
)

EHLO_PIPELINING = (
    b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
    b"250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
)
EHLO_PLAIN = b"250-mx.example.test\r\n250 8BITMIME\r\n"


def events(client: SmtpClient) -> list[object]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


def greeted(ehlo: bytes = EHLO_PIPELINING, *, lmtp: bool = False) -> SmtpClient:
    client = SmtpClient("client.example.org", lmtp=lmtp)
    client.receive_data(b"220 mx.example.test ESMTP\r\n")
    verb = b"LHLO" if lmtp else b"EHLO"
    assert client.data_to_send() == verb + b" client.example.org\r\n"
    client.receive_data(ehlo)
    found = events(client)
    assert len(found) == 1
    assert isinstance(found[0], Greeted)
    return client


def message(
    *recipients: str, data: bytes = b"Subject: hi\r\n\r\nbody\r\n"
) -> MessageCommand:
    rcpts = tuple(RecipientCommand(r) for r in recipients)
    return MessageCommand("ann@example.org", rcpts, data)


# Replies (RFC 5321 4.2)


def test_reply_parser_multiline_and_enhanced_code() -> None:
    parser = ReplyParser()
    replies = parser.feed(b"250-first line\r\n250-second\r\n250 2.1.0 last\r\n")
    assert replies == [Reply(250, ("first line", "second", "2.1.0 last"))]
    assert replies[0].text() == "250 first line second 2.1.0 last"
    assert replies[0].enhanced is None  # only the first line may carry it
    assert Reply(550, ("5.1.1 No such user",)).enhanced == "5.1.1"
    assert Reply(550, ("5.1.1 No such user",)).dsn == "5.1.1"


def test_reply_enhanced_code_class_must_match() -> None:
    # RFC 3463 2: the class of the enhanced code follows the reply code
    reply = Reply(450, ("5.1.1 mismatched",))
    assert reply.enhanced is None
    assert reply.dsn == "4.0.0"


def test_reply_code_only_and_bare_lf() -> None:
    assert ReplyParser().feed(b"250\n") == [Reply(250, ("",))]


@pytest.mark.parametrize(
    "raw",
    [
        b"abc hello\r\n",
        b"25\r\n",
        b"250xhello\r\n",
        b"650 out of range\r\n",
        b"250-one\r\n251 two\r\n",
        b"2" * 3000,
    ],
)
def test_reply_parser_rejects_malformed(raw: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        ReplyParser().feed(raw)


def test_reply_parser_bounds_line_count() -> None:
    parser = ReplyParser()
    with pytest.raises(PeerProtocolError):
        parser.feed(b"250-x\r\n" * 200)


@given(st.binary(max_size=300))
def test_reply_parser_arbitrary_bytes(raw: bytes) -> None:
    try:
        for reply in ReplyParser().feed(raw):
            assert 200 <= reply.code <= 599
    except PeerProtocolError:
        pass


@given(st.lists(st.integers(min_value=0, max_value=120), max_size=6))
def test_reply_parser_split_anywhere(cuts: list[int]) -> None:
    raw = b"220-a\r\n220 b\r\n250-x\r\n250-PIPELINING\r\n250 SIZE 9\r\n354 go\r\n"
    whole = ReplyParser().feed(raw)
    parser = ReplyParser()
    pieces: list[Reply] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(raw)]:
        pieces += parser.feed(raw[start:cut])
        start = max(start, cut)
    assert pieces == whole


def test_capabilities_case_insensitive_and_size() -> None:
    raw = b"250-mx\r\n250-pipelining\r\n250-Size 0\r\n250-starttls\r\n250 smtputf8\r\n"
    caps = Capabilities.from_ehlo(ReplyParser().feed(raw)[0])
    assert caps.pipelining
    assert caps.starttls
    assert caps.smtputf8
    assert caps.size_limit is None  # RFC 1870: 0 = no fixed limit
    assert not caps.eightbitmime
    assert not caps.dsn
    assert "SIZE" in caps.keywords


# Session opening


def test_ehlo_refused_falls_back_to_helo() -> None:
    client = SmtpClient("client.example.org")
    client.receive_data(b"220 old.example ready\r\n")
    assert client.data_to_send() == b"EHLO client.example.org\r\n"
    client.receive_data(b"502 5.5.1 command not implemented\r\n")
    assert client.data_to_send() == b"HELO client.example.org\r\n"
    client.receive_data(b"250 old.example\r\n")
    [event] = events(client)
    assert isinstance(event, Greeted)
    assert not event.capabilities.esmtp
    assert not event.capabilities.pipelining


def test_greeting_refused() -> None:
    client = SmtpClient("client.example.org")
    client.receive_data(b"554 5.7.1 no service for you\r\n")
    [event] = events(client)
    assert isinstance(event, Refused)
    assert event.stage == "greeting"
    assert event.reply.code == 554
    assert client.data_to_send() == b""
    assert client.phase is Phase.FAILED


def test_greeting_split_byte_by_byte() -> None:
    client = SmtpClient("c.example")
    for byte in b"220-mx\r\n220 ready\r\n":
        client.receive_data(bytes([byte]))
    assert client.data_to_send() == b"EHLO c.example\r\n"


def test_moves_out_of_order_are_our_bug() -> None:
    client = SmtpClient("c.example")
    with pytest.raises(ClientError):
        client.send_message(message("bo@example.test"))
    with pytest.raises(ClientError):
        client.start_tls()


def test_unexpected_reply_fails_session() -> None:
    client = greeted()
    client.receive_data(b"250 nobody asked\r\n")
    [event] = events(client)
    assert isinstance(event, Closed)
    assert "unexpected reply" in (event.error or "")
    assert client.phase is Phase.FAILED


# STARTTLS (RFC 3207)


def test_starttls_then_ehlo_again_with_fresh_capabilities() -> None:
    client = greeted(b"250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
    client.start_tls()
    assert client.data_to_send() == b"STARTTLS\r\n"
    client.receive_data(b"220 2.0.0 Ready to start TLS\r\n")
    assert isinstance(events(client)[0], TlsReady)
    client.tls_started()
    # RFC 3207 4.2: forget what we knew, greet again
    assert client.capabilities == Capabilities()
    assert client.data_to_send() == b"EHLO client.example.org\r\n"
    client.receive_data(b"250-mx\r\n250 8BITMIME\r\n")
    [event] = events(client)
    assert isinstance(event, Greeted)
    assert event.capabilities.eightbitmime


def test_starttls_reply_with_trailing_data_is_refused() -> None:
    # CVE-2011-0411 seen from the client: bytes that came in the clear
    # with the 220 must not be taken as replies after the handshake.
    client = greeted(b"250-mx\r\n250 STARTTLS\r\n")
    client.start_tls()
    client.data_to_send()
    client.receive_data(b"220 go ahead\r\n250 injected\r\n")
    found = events(client)
    assert not any(
        isinstance(e, TlsReady) and client.phase is Phase.TLS_WAIT for e in found
    )
    assert isinstance(found[-1], Closed)
    assert "data after STARTTLS" in (found[-1].error or "")


def test_starttls_refused() -> None:
    client = greeted(b"250-mx\r\n250 STARTTLS\r\n")
    client.start_tls()
    client.receive_data(b"454 4.7.0 TLS not available\r\n")
    [event] = events(client)
    assert isinstance(event, Refused)
    assert event.stage == "STARTTLS"


# Transactions


def test_pipelined_transaction_writes_one_group() -> None:
    client = greeted()
    client.send_message(message("bo@example.test", "cy@example.test"))
    # RFC 2920 3.1: MAIL, RCPTs and DATA in one write, DATA last
    assert client.data_to_send() == (
        b"MAIL FROM:<ann@example.org>\r\n"
        b"RCPT TO:<bo@example.test>\r\n"
        b"RCPT TO:<cy@example.test>\r\n"
        b"DATA\r\n"
    )
    client.receive_data(
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <cy@example.test>: unknown\r\n"
        b"354 End data\r\n"
    )
    assert client.data_to_send() == b"Subject: hi\r\n\r\nbody\r\n.\r\n"
    assert events(client) == []
    client.receive_data(b"250 2.0.0 Ok: queued as 4F2\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert done.delivered
    assert done.data_sent
    bo, cy = done.outcomes
    assert (bo.dsn, bo.text, bo.command) == (
        "2.0.0",
        "250 2.0.0 Ok: queued as 4F2",
        "end of DATA",
    )
    assert (cy.dsn, cy.status_class, cy.command) == ("5.1.1", 5, "RCPT TO")
    assert client.is_reusable


def test_unpipelined_transaction_waits_for_each_reply() -> None:
    client = greeted(EHLO_PLAIN)
    client.send_message(message("bo@example.test", "cy@example.test"))
    assert client.data_to_send() == b"MAIL FROM:<ann@example.org>\r\n"
    client.receive_data(b"250 ok\r\n")
    assert client.data_to_send() == b"RCPT TO:<bo@example.test>\r\n"
    client.receive_data(b"450 4.2.0 greylisted\r\n")
    assert client.data_to_send() == b"RCPT TO:<cy@example.test>\r\n"
    client.receive_data(b"250 ok\r\n")
    assert client.data_to_send() == b"DATA\r\n"
    client.receive_data(b"354 go\r\n")
    client.data_to_send()
    client.receive_data(b"250 queued\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert [o.status_class for o in done.outcomes] == [4, 2]
    assert done.outcomes[0].dsn == "4.2.0"
    assert done.outcomes[1].dsn == "2.0.0"


def test_mail_refused_decides_every_recipient_and_resets() -> None:
    client = greeted(EHLO_PLAIN)
    client.send_message(message("bo@example.test", "cy@example.test"))
    client.data_to_send()
    client.receive_data(b"553 5.7.1 sender rejected\r\n")
    # RFC 5321 4.1.1.5: RSET before the session is used again
    assert client.data_to_send() == b"RSET\r\n"
    assert events(client) == []
    client.receive_data(b"250 2.0.0 Ok\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert not done.delivered
    assert {(o.dsn, o.command) for o in done.outcomes} == {("5.7.1", "MAIL FROM")}
    assert client.is_reusable


def test_pipelined_all_recipients_refused_but_354_sends_lone_dot() -> None:
    client = greeted()
    client.send_message(message("bo@example.test"))
    client.data_to_send()
    client.receive_data(b"250 ok\r\n550 5.1.1 no\r\n354 go ahead anyway\r\n")
    # RFC 2920 3.1: no valid recipient, end the empty message at once
    assert client.data_to_send() == b".\r\nRSET\r\n"
    client.receive_data(b"554 5.5.1 no valid recipients\r\n250 ok\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert not done.delivered
    assert done.outcomes[0].dsn == "5.1.1"
    assert not done.data_sent


def test_data_refused_goes_to_accepted_recipients() -> None:
    client = greeted()
    client.send_message(message("bo@example.test"))
    client.data_to_send()
    client.receive_data(b"250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n250 reset\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert (done.outcomes[0].dsn, done.outcomes[0].command) == ("4.3.0", "DATA")


def test_end_of_data_refused() -> None:
    client = greeted()
    client.send_message(message("bo@example.test"))
    client.data_to_send()
    client.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.data_to_send()
    client.receive_data(b"552 5.3.4 too big\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert not done.delivered
    assert done.outcomes[0].dsn == "5.3.4"


def test_parameters_are_sent() -> None:
    client = greeted()
    rcpt = RecipientCommand("bo@example.test", ("NOTIFY=FAILURE", "ORCPT=rfc822;bo@x"))
    command = MessageCommand("ann@example.org", (rcpt,), b"x\r\n", ("SIZE=3",))
    client.send_message(command)
    assert client.data_to_send().splitlines()[:2] == [
        b"MAIL FROM:<ann@example.org> SIZE=3",
        b"RCPT TO:<bo@example.test> NOTIFY=FAILURE ORCPT=rfc822;bo@x",
    ]


def test_null_sender_and_line_breaks_in_addresses() -> None:
    client = greeted()
    client.send_message(MessageCommand("", (RecipientCommand("bo@x.test"),), b"x"))
    assert client.data_to_send().startswith(b"MAIL FROM:<>\r\n")
    client = greeted()
    bad = MessageCommand("a@b\r\nRSET", (RecipientCommand("bo@x.test"),), b"x")
    with pytest.raises(ClientError):
        client.send_message(bad)


def test_421_then_close_defers_everyone_before_data() -> None:
    client = greeted()
    client.send_message(message("bo@example.test", "cy@example.test"))
    client.data_to_send()
    client.receive_data(b"421 4.3.2 shutting down\r\n")
    client.receive_data(b"")
    found = events(client)
    done = found[0]
    assert isinstance(done, TransactionDone)
    assert not done.data_sent
    assert [o.reply.code if o.reply else None for o in done.outcomes] == [421, 421]
    assert isinstance(found[1], Closed)


def test_connection_lost_after_data_is_marked() -> None:
    client = greeted()
    client.send_message(message("bo@example.test"))
    client.data_to_send()
    client.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.data_to_send()
    client.receive_data(b"")
    done, closed = events(client)
    assert isinstance(done, TransactionDone)
    assert done.data_sent
    outcome = done.outcomes[0]
    assert outcome.dsn == "4.4.2"
    assert outcome.reply is None
    assert "while sending end of data" in outcome.text
    assert isinstance(closed, Closed)


def test_abort_defers_open_recipients() -> None:
    client = greeted()
    client.send_message(message("bo@example.test"))
    client.abort("conversation timed out")
    done, closed = events(client)
    assert isinstance(done, TransactionDone)
    assert done.outcomes[0].text.startswith("conversation timed out while sending MAIL")
    assert client.phase is Phase.FAILED
    client.receive_data(b"250 late\r\n")
    assert events(client) == []


def test_quit() -> None:
    client = greeted()
    client.quit()
    assert client.data_to_send() == b"QUIT\r\n"
    client.receive_data(b"221 2.0.0 Bye\r\n")
    [event] = events(client)
    assert event == Closed()
    assert client.phase is Phase.CLOSED


# LMTP (RFC 2033)


def test_lmtp_one_reply_per_accepted_recipient() -> None:
    client = greeted(b"250-lmtp.example\r\n250 PIPELINING\r\n", lmtp=True)
    client.send_message(message("a@x.test", "b@x.test", "c@x.test"))
    client.data_to_send()
    client.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no b\r\n250 ok\r\n354 go\r\n")
    client.data_to_send()
    client.receive_data(b"250 2.0.0 a saved\r\n")
    assert events(client) == []
    client.receive_data(b"452 4.2.2 c over quota\r\n")
    [done] = events(client)
    assert isinstance(done, TransactionDone)
    assert done.delivered
    assert [o.dsn for o in done.outcomes] == ["2.0.0", "5.1.1", "4.2.2"]


def test_lmtp_never_falls_back_to_helo() -> None:
    client = SmtpClient("c.example", lmtp=True)
    client.receive_data(b"220 lmtp\r\n")
    client.data_to_send()
    client.receive_data(b"500 5.5.1 unknown command\r\n")
    [event] = events(client)
    assert isinstance(event, Refused)
    assert event.stage == "LHLO"


# Dot-stuffing (RFC 5321 4.5.2)


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b".hidden\r\nx\r\n", b"..hidden\r\nx\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"no final newline", b"no final newline\r\n.\r\n"),
        (b"", b".\r\n"),
    ],
)
def test_dot_stuff(data: bytes, wire: bytes) -> None:
    assert dot_stuff(data) == wire
