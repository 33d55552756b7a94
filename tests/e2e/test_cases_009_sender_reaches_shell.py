"""Case 009: envelope text must never reach a shell (CVE-2020-7247 shape).

RFC 5321 4.1.2: `;` and SP are not atext, so `<;sleep 5;>` is 501 — and
the validation result is the one acted on. Backquote, `$`, `{`, `}`, `|`,
`/` are legal atext and a quoted local part may hold `;` and spaces:
such mail is accepted and stored as data (Return-Path verbatim, RFC 5321
4.4). A recipient local part is only a mailbox key: `"|cmd"@domain` is an
unknown user, never a pipe delivery (postfix local(8)).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cases_support import CaseServer, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[CaseServer]:
    yield from running_server()


def canary(server: CaseServer, n: int) -> Path:
    return server.root / f"roost-pwned{n}"


@pytest.mark.parametrize(
    "path",
    ["<;sleep 5;>", "<a;b@example.org>", "<$(id)>", "<a b@example.org>", "<|id>"],
)
def test_case_009_invalid_sender_is_refused(server: CaseServer, path: str) -> None:
    smtp = server.smtp()
    smtp.ehlo()
    assert smtp.cmd(f"MAIL FROM:{path}") == 501
    # the refusal sticks: no transaction is open
    assert smtp.cmd("RCPT TO:<alice@example.test>") == 503


def test_case_009_metacharacters_are_data(server: CaseServer) -> None:
    server.clear_mail("alice")
    senders = [
        f'"; touch {canary(server, 1)}; "@example.org',
        "`touch${IFS}roost-pwned2`@example.org",
        "$HOME|{a}/b!#%&'*+=?^_~@example.org",
    ]
    smtp = server.smtp()
    smtp.ehlo()
    for sender in senders:
        assert smtp.cmd(f"MAIL FROM:<{sender}>") == 250, sender
        rcpt = f'"|touch {canary(server, 3)}"@example.test'
        assert smtp.cmd(f"RCPT TO:<{rcpt}>") == 550
        assert smtp.cmd(f'RCPT TO:<"/{canary(server, 4)}"@example.test>') == 550
        assert smtp.cmd('RCPT TO:<":include:/etc/passwd"@example.test>') == 550
        assert smtp.cmd("RCPT TO:<alice@example.test>") == 250
        assert smtp.cmd("DATA") == 354
        smtp.send(b"Subject: one\r\n\r\nx\r\n.\r\n")
        assert smtp.code() == 250
    files = server.wait_messages("alice", len(senders))
    return_paths = {p.read_bytes().split(b"\n", 1)[0] for p in files}
    assert return_paths == {f"Return-Path: <{s}>".encode() for s in senders}
    for n in range(1, 5):
        assert not canary(server, n).exists()
        assert not Path(f"roost-pwned{n}").exists()  # the server's cwd
    # Maildir names are Roost's own ids, not envelope text
    for path in files:
        assert not set(path.name) & set(";`$|{}\"' ")
