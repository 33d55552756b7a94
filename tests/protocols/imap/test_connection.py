"""The IMAP server core, driven by bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.protocols.imap.commands import Append, Fetch, Login, Simple
from roost.protocols.imap.connection import (
    AuthResponse,
    ConnectionClosed,
    IdleDone,
    Limits,
    ServerConnection,
)
from roost.protocols.imap.state import State


def drive(core: ServerConnection, data: bytes, *, bytewise: bool = False):
    """Feed data; return (events, bytes the core wants sent)."""
    events: list[object] = []
    out = b""
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        core.receive_data(chunk)  # b"" is end of input: one ConnectionClosed
        while (event := core.next_event()) is not None:
            events.append(event)
            if isinstance(event, ConnectionClosed):
                break
        out += core.data_to_send()
    return events, out


def test_login_with_synchronizing_literal() -> None:
    core = ServerConnection()
    events, out = drive(core, b"a1 LOGIN {5}\r\n")
    assert events == []
    assert out == b"+ Ready for literal data\r\n"
    events, out = drive(core, b"alice {3}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    events, out = drive(core, b"p\xc3\xa4\r\n")
    assert events == [Login("a1", "LOGIN", b"alice", b"p\xc3\xa4")]


def test_nonsynchronizing_literal_gets_no_continuation() -> None:
    events, out = drive(ServerConnection(), b"a1 LOGIN {5+}\r\nalice pw\r\n")
    assert out == b""
    assert events == [Login("a1", "LOGIN", b"alice", b"pw")]


def test_bytewise_equals_whole() -> None:
    data = b'a1 LOGIN {5+}\r\nalice "p\\"w"\r\na2 NOOP\r\nbad\r\na3 FOO\r\n* NOOP\r\n'
    whole = drive(ServerConnection(), data)
    split = drive(ServerConnection(), data, bytewise=True)
    assert whole == split
    assert whole[1] == (
        b"bad BAD Missing command\r\na3 BAD Unknown command\r\n* BAD Invalid tag\r\n"
    )


def test_state_table_refuses_out_of_state_commands() -> None:
    core = ServerConnection()
    events, out = drive(core, b"a1 SELECT INBOX\r\na2 FETCH 1 FLAGS\r\n")
    assert events == []
    assert out == (
        b"a1 BAD Command not valid in this state\r\n"
        b"a2 BAD Command not valid in this state\r\n"
    )
    core.state = State.SELECTED
    events, _ = drive(core, b"a3 UID FETCH 1:* (FLAGS)\r\n")
    assert isinstance(events[0], Fetch)
    assert events[0].uid
    events, out = drive(core, b"a4 LOGIN a b\r\na5 UID COPYX 1 x\r\n")
    assert out == (
        b"a4 BAD Command not valid in this state\r\na5 BAD Invalid UID command\r\n"
    )


def test_append_literal_limits_follow_state() -> None:
    core = ServerConnection(Limits(max_append_bytes=100))
    core.state = State.AUTHENTICATED
    _, out = drive(core, b"a1 APPEND INBOX {101}\r\n")
    assert out == b"a1 NO [TOOBIG] Literal too large\r\n"
    events, out = drive(core, b"a2 APPEND INBOX (\\Seen) {3}\r\n")
    assert out == b"+ Ready for literal data\r\n"
    events, _ = drive(core, b"abc\r\n")
    assert events == [Append("a2", "APPEND", "INBOX", ("\\Seen",), None, b"abc")]


def test_refused_nonsync_literal_is_skipped_whole() -> None:
    core = ServerConnection(Limits(max_literal_preauth_bytes=4))
    data = b"a1 LOGIN {6+}\r\nabcdef {2+}\r\nxy\r\na2 NOOP\r\n"
    events, out = drive(core, data)
    assert out == b"a1 NO [TOOBIG] Literal too large\r\n"
    assert events == [Simple("a2", "NOOP")]


def test_line_too_long_ends_session() -> None:
    core = ServerConnection(Limits(max_line_bytes=100))
    assert not core.is_closed
    events, out = drive(core, b"a" * 200)
    assert out == b"* BYE Line too long\r\n"
    assert core.is_closed  # the service must end the session now
    events, out = drive(core, b"\r\na2 NOOP\r\n")
    assert events == []
    assert out == b""


def test_idle_and_auth_modes() -> None:
    core = ServerConnection()
    core.start_idle()
    assert drive(core, b"DONE\r\n")[0] == [IdleDone(True)]
    core.start_idle()
    assert drive(core, b"a1 NOOP\r\n")[0] == [IdleDone(False)]
    core.expect_auth_response()
    assert drive(core, b"AGEAYg==\r\n")[0] == [AuthResponse(b"AGEAYg==")]


def test_eof_gives_connection_closed() -> None:
    core = ServerConnection()
    core.receive_data(b"a1 NO")
    core.receive_data(b"")
    assert core.next_event() == ConnectionClosed()


def test_discard_input_after_starttls() -> None:
    core = ServerConnection()
    events, _ = drive(core, b"a1 STARTTLS\r\n")
    core.receive_data(b"a2 NOOP\r\n")
    core.discard_input()  # case 003
    assert core.next_event() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    core = ServerConnection(Limits(max_line_bytes=200))
    for state in (State.NOT_AUTHENTICATED, State.SELECTED):
        core.state = state
        drive(core, data)
        drive(core, b"\r\n")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), max_size=6))
def test_any_split_gives_same_events(cuts: list[int]) -> None:
    data = (
        b'a1 LOGIN {5}\r\nalice "pw"\r\na2 NOOP\r\na3 LOGIN {3+}\r\nbob {2}\r\npw\r\n'
    )
    expected = drive(ServerConnection(), data)
    core = ServerConnection()
    events: list[object] = []
    out = b""
    pos = 0
    for cut in [*cuts, len(data)]:
        piece, pos = data[pos : pos + cut], pos + cut
        if not piece:
            break
        core.receive_data(piece)
        while (event := core.next_event()) is not None:
            events.append(event)
        out += core.data_to_send()
        if pos >= len(data):
            break
    if pos < len(data):
        core.receive_data(data[pos:])
    while (event := core.next_event()) is not None:
        events.append(event)
    out += core.data_to_send()
    assert (events, out) == expected
