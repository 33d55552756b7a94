"""Properties of the server core and the grammar (Hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.protocols.smtp import events as ev
from roost.protocols.smtp import grammar
from roost.protocols.smtp.reply import BAD_ADDRESS_SYNTAX, SmtpError

from .server_driver import Driver

COMMANDS = [
    b"EHLO client.example.org\r\n",
    b"HELO client.example.org\r\n",
    b"MAIL FROM:<sender@example.org>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8bitmime\r\n",
    b"RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE\r\n",
    b'RCPT TO:<"a b"@example.test>\r\n',
    b"DATA\r\n",
    b"BDAT 7\r\n",
    b"BDAT 3 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT x\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY alice\r\n",
    b"AUTH PLAIN\r\n",
    b"QUIT\r\n",
    b".\r\n",
    b"\r\n",
    b"\n.\n",
    b"..x\r\n",
    b"line\r",
    b"\x00\xff",
    b"x" * 600,
]

# STARTTLS is left out: dropping what follows it depends on how the
# bytes arrived, by design (case 003); test_server covers it.
stream = st.lists(
    st.one_of(st.sampled_from(COMMANDS), st.binary(max_size=40)), max_size=30
).map(b"".join)


def run_chunks(chunks: list[bytes]) -> tuple[list[ev.Event], bytes]:
    d = Driver(forbid_unauth_pipelining=False, max_message_bytes=300)
    for chunk in filter(None, chunks):
        d.feed(chunk)
        if d.core.is_closed:
            break
    d.feed(b"")
    return d.events, bytes(d.out)


@settings(max_examples=300, deadline=None)
@given(stream)
def test_any_bytes_give_events_never_exceptions(data: bytes) -> None:
    events, out = run_chunks([data])
    assert isinstance(events[-1], ev.ConnectionClosed)
    assert out.endswith(b"\r\n")


@settings(max_examples=300, deadline=None)
@given(stream)
def test_byte_at_a_time_gives_the_same_events(data: bytes) -> None:
    whole = run_chunks([data])
    single = run_chunks([data[i : i + 1] for i in range(len(data))])
    assert single == whole


@settings(max_examples=200, deadline=None)
@given(stream, st.data())
def test_any_split_gives_the_same_events(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert run_chunks(chunks) == run_chunks([data])


body_lines = st.lists(
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(body_lines)
def test_dot_stuffed_message_comes_back_unchanged(lines: list[bytes]) -> None:
    # RFC 5321 4.5.2: stuff on the way in, unstuff in the core
    message = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
    )
    d = Driver(max_message_bytes=0)
    for line in (
        b"EHLO c.example.org\r\n",
        b"MAIL FROM:<a@example.org>\r\n",
        b"RCPT TO:<b@example.test>\r\n",
        b"DATA\r\n",
    ):
        d.feed(line)
    d.feed(stuffed + b".\r\n")
    received = [e for e in d.events if isinstance(e, ev.DataReceived | ev.Refused)]
    if b"\x00" in message:
        assert isinstance(received[-1], ev.Refused)
    else:
        assert received == [ev.DataReceived(message, len(message))]


local_atom = st.text(
    alphabet=st.sampled_from("abcXYZ019!#$%&'*+-/=?^_`{|}~"), min_size=1, max_size=8
)
dot_string = st.lists(local_atom, min_size=1, max_size=3).map(".".join)
quoted = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12
)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


@settings(max_examples=300)
@given(st.one_of(dot_string, quoted), domain)
def test_mailbox_print_then_parse(local_part: str, dom: str) -> None:
    box = grammar.Mailbox(local_part, dom)
    assert grammar.parse_mailbox(box.text) == box


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_parse_path_only_raises_smtp_error(text: str) -> None:
    replies = []
    try:
        parsed = grammar.parse_path(text, allow_null=True, error=BAD_ADDRESS_SYNTAX)
    except SmtpError as exc:
        replies.append(exc.reply)
    else:
        assert text == f"<{parsed.text}>" or parsed.route or '"' in text
    assert replies in ([], [BAD_ADDRESS_SYNTAX])
