"""Case 011: SIZE declared at MAIL and the real size of DATA.

RFC 1870 4: `size-value ::= 1*20DIGIT`; 6: one SIZE parameter only;
6.1: a declared size over the fixed maximum gets 552. RFC 1870 6.3: a
client may under-declare, so the server counts the real octets (after
dot-unstuffing, 5) and answers 552 after <CRLF>.<CRLF> — exactly one
reply (RFC 5321 4.1.1.4, 4.5.3.1.9), nothing queued, bounded disk.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cases_support import CaseServer, running_server

LIMIT = 1048576


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server({"message_size_limit": str(LIMIT)})


def test_case_011_size_advertised(server: CaseServer) -> None:
    smtp = server.smtp()
    assert f"250-SIZE {LIMIT}\r\n".encode() in smtp.ehlo()


@pytest.mark.parametrize(
    ("param", "codes"),
    [
        ("SIZE=99999999999999999999", (552,)),
        ("SIZE=999999999999999999999", (501, 552, 555)),
        ("SIZE=-1", (501, 555)),
        ("SIZE=+5", (501, 555)),
        ("SIZE=1e3", (501, 555)),
        ("SIZE=", (501, 555)),
        ("SIZE", (501, 555)),
        ("SIZE=0x10", (501, 555)),
        ("SIZE=1_000", (501, 555)),
        ("SIZE=\uff15", (501, 555)),  # full-width 5: int() would take it
        ("SIZE=1000 SIZE=2000", (501, 555)),
        (f"SIZE={LIMIT + 1}", (552,)),
    ],
)
def test_case_011_bad_size_parameters(
    server: CaseServer, param: str, codes: tuple[int, ...]
) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"MAIL FROM:<sender@example.org> {param}".encode()) in codes
    assert smtp.cmd("MAIL FROM:<sender@example.org> SIZE=1000") == 250


def spool_bytes(server: CaseServer) -> int:
    queue = server.data_dir / "queue"
    return sum(p.stat().st_size for p in queue.rglob("*") if p.is_file())


@pytest.mark.parametrize("declared", ["SIZE=1000", "", f"SIZE={LIMIT}"])
def test_case_011_data_over_limit_gets_552_after_end(
    server: CaseServer, declared: str
) -> None:
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"MAIL FROM:<sender@example.org> {declared}".strip()) == 250
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
    assert smtp.cmd("DATA") == 354
    line = b"x" * 76 + b"\r\n"
    smtp.send(b"Subject: big\r\n\r\n")
    peak = 0
    for _ in range(55):
        smtp.send(line * 1000)
        peak = max(peak, spool_bytes(server))
    # no reply before the end of data
    assert smtp.nothing_within(0.5), smtp.buf
    smtp.send(b".\r\n")
    assert smtp.code() == 552
    assert smtp.nothing_within(0.5), smtp.buf
    assert smtp.cmd("NOOP") == 250
    assert peak < 2 * LIMIT, f"spool held {peak} bytes"
    server.wait_queue_empty()
    assert server.messages("alice") == []


def test_case_011_exactly_at_limit_counts_unstuffed_octets(server: CaseServer) -> None:
    """RFC 1870 5: size is after dot-unstuffing, so stuffed dots are free."""
    server.clear_mail("alice")
    smtp = server.smtp()
    smtp.ehlo()
    head = b"Subject: fit\r\n\r\n"
    # our own Received/trace headers count too: stay 4 KiB below the limit
    body_len = LIMIT - len(head) - 4096
    line = b".." + b"y" * 97 + b"\r\n"  # 101 octets sent, 100 counted
    count = body_len // 100
    data = head + line * count + b".\r\n"
    assert len(data) > LIMIT - 4096
    assert smtp.transaction("sender@example.org", ["alice@example.test"], data) == 250
    (path,) = server.wait_messages("alice", 1)
    assert path.read_bytes().count(b"\n.yyy") == count
