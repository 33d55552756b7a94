"""The POP3 core by bytes: events and refusals, whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.protocols.pop3 import Pop3Error, Pop3Server, State, events

Outcome = events.Event | bytes


def drain(server: Pop3Server) -> list[Outcome]:
    """Pull every event; a refusal shows up as its -ERR bytes."""
    out: list[Outcome] = []
    while True:
        try:
            event = server.next_event()
        except Pop3Error as err:
            out.append(err.to_bytes())
            if err.is_fatal:
                return out
            continue
        if event is None:
            return out
        out.append(event)
        if isinstance(event, events.ConnectionClosed):
            return out


def feed(server: Pop3Server, data: bytes, *, one_byte: bool = False) -> list[Outcome]:
    out: list[Outcome] = []
    chunks = [data[i : i + 1] for i in range(len(data))] if one_byte else [data]
    for chunk in chunks:
        if not chunk:
            continue
        server.receive_data(chunk)
        out += drain(server)
    return out


def close(server: Pop3Server) -> list[Outcome]:
    server.receive_data(b"")
    return drain(server)


def both_ways(data: bytes, **kwargs: object) -> list[Outcome]:
    """Feed whole and byte by byte; both must give the same outcomes."""
    whole = feed(Pop3Server(**kwargs), data)  # type: ignore[arg-type]
    split = feed(Pop3Server(**kwargs), data, one_byte=True)  # type: ignore[arg-type]
    assert whole == split
    return whole


def logged_in_server(**kwargs: object) -> Pop3Server:
    server = Pop3Server(**kwargs)  # type: ignore[arg-type]
    server.logged_in()
    return server


def test_user_pass_gives_paired_event() -> None:
    out = both_ways(b"USER alice\r\nPASS secret with spaces\r\n")
    assert out == [
        events.User("alice"),
        events.Pass("alice", "secret with spaces"),
    ]


def test_verbs_are_case_insensitive_and_lf_alone_ends_a_line() -> None:
    assert both_ways(b"user bob\npass x\n") == [
        events.User("bob"),
        events.Pass("bob", "x"),
    ]


def test_pass_without_user_is_refused() -> None:
    out = both_ways(b"PASS secret\r\n")
    assert out == [b"-ERR Send USER first\r\n"]


def test_transaction_commands_refused_before_login() -> None:
    # RFC 1939 §4: only USER/PASS/APOP/QUIT (and CAPA, AUTH, STLS) here.
    out = both_ways(b"STAT\r\nRETR 1\r\nNOOP\r\n")
    assert out == [
        b"-ERR STAT not allowed now\r\n",
        b"-ERR RETR not allowed now\r\n",
        b"-ERR NOOP not allowed now\r\n",
    ]


def test_unknown_and_apop_are_refused() -> None:
    out = both_ways(b"APOP alice 0123\r\nXYZZY\r\n\r\n")
    assert out == [b"-ERR Unknown command\r\n"] * 3


def test_transaction_commands_parse() -> None:
    server = logged_in_server()
    data = (
        b"STAT\r\nLIST\r\nLIST 2\r\nRETR 3\r\nDELE 4\r\nNOOP\r\n"
        b"RSET\r\nTOP 5 0\r\nUIDL\r\nUIDL 6\r\nCAPA\r\nQUIT\r\n"
    )
    assert feed(server, data) == [
        events.Stat(),
        events.List(None),
        events.List(2),
        events.Retr(3),
        events.Dele(4),
        events.Noop(),
        events.Rset(),
        events.Top(5, 0),
        events.Uidl(None),
        events.Uidl(6),
        events.Capa(),
        events.Quit(),
    ]
    assert server.state is State.UPDATE


def test_login_commands_refused_after_login() -> None:
    server = logged_in_server()
    assert feed(server, b"USER bob\r\nSTLS\r\n") == [
        b"-ERR USER not allowed now\r\n",
        b"-ERR STLS not allowed now\r\n",
    ]


@pytest.mark.parametrize(
    "arg",
    [b"0", b"-1", b"+1", b"1_0", "\u0663".encode(), b"12345678901", b"1 2", b""],
)
def test_bad_message_numbers(arg: bytes) -> None:
    server = logged_in_server()
    out = feed(server, b"RETR " + arg + b"\r\n")
    assert len(out) == 1
    assert isinstance(out[0], bytes)
    assert out[0].startswith(b"-ERR ")


def test_top_needs_two_numbers() -> None:
    server = logged_in_server()
    out = feed(server, b"TOP 1\r\nTOP 1 x\r\nTOP 1 99999999999999\r\n")
    assert out[:2] == [
        b"-ERR Syntax: TOP msg lines\r\n",
        b"-ERR Invalid number of lines\r\n",
    ]
    assert out[2] == events.Top(1, 99999999999999)


def test_line_of_255_octets_is_accepted_256_refused() -> None:
    # RFC 2449 §4: 255 octets including the CRLF.
    ok = b"USER " + b"a" * 248 + b"\r\n"
    too_long = b"USER " + b"a" * 249 + b"\r\n"
    assert len(ok) == 255
    assert both_ways(ok) == [events.User("a" * 248)]
    assert both_ways(too_long + b"USER b\r\n") == [
        b"-ERR Line too long\r\n",
        events.User("b"),
    ]


def test_endless_line_keeps_buffer_bounded() -> None:
    server = Pop3Server()
    for _ in range(100):
        server.receive_data(b"x" * 1000)
        assert drain(server) == []
    assert len(server._buffer) <= 1000
    server.receive_data(b"\r\nCAPA\r\n")
    assert drain(server) == [b"-ERR Line too long\r\n", events.Capa()]


def test_too_many_bad_commands_is_fatal() -> None:
    server = Pop3Server(max_bad_commands=3)
    out = feed(server, b"BAD\r\nBAD\r\nBAD\r\nCAPA\r\n")
    assert out == [
        b"-ERR Unknown command\r\n",
        b"-ERR Unknown command\r\n",
        b"-ERR Too many bad commands\r\n",
    ]
    assert server.state is State.CLOSED
    assert drain(server) == []


def test_nul_in_command_is_refused() -> None:
    assert both_ways(b"USER al\x00ice\r\n") == [
        b"-ERR Invalid characters in command\r\n",
    ]


def test_invalid_utf8_user_is_refused() -> None:
    assert both_ways(b"USER \xff\xfe\r\n") == [
        b"-ERR Invalid UTF-8 in argument\r\n",
    ]


def test_plaintext_refused_when_not_allowed() -> None:
    out = both_ways(
        b"USER alice\r\nPASS x\r\nAUTH PLAIN AGEAYg==\r\n",
        plaintext_auth_allowed=False,
    )
    refusal = (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n"
    )
    assert out == [refusal, refusal, refusal]


def test_capa_before_login_lists_auth_and_stls() -> None:
    text = Pop3Server().capabilities()
    assert text.startswith(b"+OK ")
    assert text.endswith(b"\r\n.\r\n")
    lines = text.split(b"\r\n")[1:-2]
    for cap in (b"USER", b"SASL PLAIN", b"STLS", b"TOP", b"UIDL"):
        assert cap in lines
    assert b"RESP-CODES" in lines
    assert b"AUTH-RESP-CODE" in lines


def test_capa_without_plaintext_hides_user_and_sasl() -> None:
    lines = Pop3Server(plaintext_auth_allowed=False).capabilities().split(b"\r\n")
    assert b"USER" not in lines
    assert not any(line.startswith(b"SASL") for line in lines)
    assert b"STLS" in lines


def test_capa_after_login_and_on_tls() -> None:
    lines = logged_in_server().capabilities().split(b"\r\n")
    assert b"USER" not in lines
    assert b"STLS" not in lines
    assert b"TOP" in lines
    assert b"STLS" not in Pop3Server(is_tls=True).capabilities().split(b"\r\n")


def test_auth_plain_with_initial_response() -> None:
    out = both_ways(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH plain =\r\n")
    assert out == [
        events.Auth("PLAIN", b"AGFsaWNlAHNlY3JldA=="),
        events.Auth("PLAIN", b""),
    ]


def test_auth_plain_continuation_form() -> None:
    # RFC 5034 §4: empty challenge "+ ", then the response line.
    server = Pop3Server()
    assert feed(server, b"AUTH PLAIN\r\n") == [events.Auth("PLAIN", None)]
    assert server.sasl_challenge("PLAIN") == b"+ \r\n"
    assert feed(server, b"AGFsaWNlAHNlY3JldA==\r\n") == [
        events.SaslResponse("PLAIN", b"AGFsaWNlAHNlY3JldA=="),
    ]
    # Back to commands afterwards.
    assert feed(server, b"CAPA\r\n") == [events.Capa()]


def test_auth_abort_with_star() -> None:
    # RFC 5034 §4: "*" cancels; the server replies -ERR; case 015.
    server = Pop3Server()
    feed(server, b"AUTH PLAIN\r\n")
    server.sasl_challenge("PLAIN")
    assert feed(server, b"*\r\nCAPA\r\n") == [
        b"-ERR Authentication aborted by client\r\n",
        events.Capa(),
    ]


def test_sasl_response_may_exceed_255_octets() -> None:
    server = Pop3Server()
    feed(server, b"AUTH PLAIN\r\n")
    server.sasl_challenge("PLAIN")
    long_line = b"A" * 1000
    assert feed(server, long_line + b"\r\n") == [
        events.SaslResponse("PLAIN", long_line),
    ]


def test_auth_unknown_mechanism_and_bare_auth() -> None:
    out = both_ways(b"AUTH CRAM-MD5\r\nAUTH\r\n")
    assert out == [
        b"-ERR Unsupported authentication mechanism\r\n",
        events.Auth(None, None),
    ]
    assert Pop3Server().mechanism_list() == b"+OK\r\nPLAIN\r\n.\r\n"


def test_auth_failures_close_after_the_limit() -> None:
    server = Pop3Server(max_auth_failures=2)
    first = server.auth_failure()
    assert not first.is_fatal
    assert first.to_bytes() == b"-ERR [AUTH] Authentication failed\r\n"
    assert server.auth_failure().is_fatal
    assert server.state is State.CLOSED


def test_stls_discards_pipelined_plaintext() -> None:
    # Case 003, RFC 2595 §4: NOOP sent with STLS in one write never runs.
    server = Pop3Server()
    assert feed(server, b"STLS\r\nUSER mallory\r\nPASS x\r\n") == [events.Stls()]
    assert server.stls_ok() == b"+OK Begin TLS negotiation now\r\n"
    # Bytes arriving before the handshake completes are dropped too.
    assert feed(server, b"USER mallory\r\n") == []
    server.tls_started()
    assert server.is_tls
    assert feed(server, b"PASS x\r\nCAPA\r\n") == [
        b"-ERR Send USER first\r\n",
        events.Capa(),
    ]


def test_stls_refused_on_tls_or_when_unavailable() -> None:
    assert both_ways(b"STLS\r\n", is_tls=True) == [b"-ERR Already using TLS\r\n"]
    assert both_ways(b"STLS\r\n", tls_available=False) == [
        b"-ERR STLS not available\r\n",
    ]


def test_quit_in_authorization_closes() -> None:
    server = Pop3Server()
    assert feed(server, b"QUIT\r\nUSER a\r\n") == [events.Quit()]
    assert server.state is State.CLOSED
    assert server.is_closing


def test_nothing_is_read_in_update_state() -> None:
    server = logged_in_server()
    assert feed(server, b"QUIT\r\nDELE 1\r\n") == [events.Quit()]
    assert server.is_closing
    assert close(server) == []


def test_eof_gives_connection_closed_once() -> None:
    server = Pop3Server()
    assert feed(server, b"USER a\r\nPAS") == [events.User("a")]
    assert close(server) == [events.ConnectionClosed()]
    assert close(server) == []


def test_greeting_has_no_apop_timestamp() -> None:
    banner = Pop3Server().greeting()
    assert banner.startswith(b"+OK ")
    assert b"<" not in banner


_COMMANDS = st.sampled_from(
    [
        b"USER alice",
        b"PASS pw",
        b"AUTH PLAIN",
        b"AUTH PLAIN AGEAYg==",
        b"*",
        b"CAPA",
        b"STAT",
        b"LIST 1",
        b"RETR 1",
        b"TOP 1 2",
        b"QUIT",
        b"NOOP",
        b"\xff\x00",
        b"x" * 300,
    ],
)


@given(st.lists(_COMMANDS, max_size=12), st.binary(max_size=64))
def test_any_input_gives_events_or_pop3_errors(
    commands: list[bytes],
    noise: bytes,
) -> None:
    data = b"\r\n".join(commands) + b"\r\n" + noise
    # Splitting the input anywhere changes nothing; nothing but
    # Pop3Error escapes (feed would raise anything else).
    both_ways(data)
    both_ways(data, plaintext_auth_allowed=False)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=299))
def test_split_point_never_matters(data: bytes, cut: int) -> None:
    whole = feed(Pop3Server(), data)
    server = Pop3Server()
    parts = feed(server, data[:cut]) + feed(server, data[cut:])
    assert whole == parts
