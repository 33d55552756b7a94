"""Issue 3 proof: pflogsumm (Debian's package) summarises Roost's mail log.

Roost writes postfix-shaped lines to maillog_file (`Dec  4 17:30:00 host
roost/smtpd[123]: QID: client=...`); `pflogsumm --syslog-name=roost`
must count exactly the traffic a test made. What pflogsumm reads:

- received: `smtpd[pid]: QID: client=...` or `pickup[pid]: QID: uid=`
- delivered / deferred / bounced: `QID: to=<..>, relay=.., delay=..,
  delays=.., dsn=.., status=sent|deferred|bounced (...)`, except
  `status=sent (forwarded as ...)`, which counts as forwarded
- rejected: `smtpd[pid]: QID: reject: RCPT from ...` (or NOQUEUE)
- sizes: `QID: from=<..>, size=N, nrcpt=N`
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RoostServer, need_binary
from tests.e2e.mta_support import ScriptedSmtp, scripted_smtp, wait_log

pytestmark = pytest.mark.timeout(300)

COUNTERS = ("received", "delivered", "forwarded", "deferred", "bounced", "rejected")


@pytest.fixture
def remote() -> Iterator[ScriptedSmtp]:
    rules = [("RCPT", "no@", b"550 5.1.1 <no@remote.example>: no such user")]
    with scripted_smtp(rules=rules) as server:
        yield server


@pytest.fixture
def logged_server(
    roost_factory: Callable[..., RoostServer], remote: ScriptedSmtp, tmp_path: Path
) -> RoostServer:
    return roost_factory(
        maillog_file=str(tmp_path / "mail.log"),
        relayhost=f"[127.0.0.1]:{remote.port}",
    )


def maillog(server: RoostServer) -> Path:
    return Path(server.extra_config["maillog_file"])


def summary(server: RoostServer) -> dict[str, int]:
    """pflogsumm's grand totals for the server's maillog_file."""
    binary = need_binary("pflogsumm")
    result = subprocess.run(
        [binary, "--syslog-name=roost", str(maillog(server))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    totals = {}
    for name in COUNTERS:
        match = re.search(rf"^\s*(\d+)\s+{name}\b", result.stdout, re.M)
        assert match, f"no {name!r} line in:\n{result.stdout}"
        totals[name] = int(match.group(1))
    return totals


def smtp(server: RoostServer) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30)


def test_pflogsumm_counts_roost_traffic(
    logged_server: RoostServer, remote: ScriptedSmtp
) -> None:
    server = logged_server
    tok = uuid.uuid4().hex

    # A: one delivered recipient, one rejected at RCPT
    with smtp(server) as client:
        client.ehlo("client.example.org")
        assert client.mail("ann@example.org")[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt("nobody@example.test")[0] == 550
        assert client.data(f"Subject: A {tok}\r\n\r\na\r\n".encode())[0] == 250
    # B: two local recipients
    with smtp(server) as client:
        data = f"Subject: B {tok}\r\n\r\nb\r\n"
        client.sendmail(
            "ann@example.org", ["alice@example.test", "bob@example.test"], data
        )
    # C: sendmail (maildrop, picked up)
    server.cli(
        "sendmail",
        "-f",
        "alice@example.test",
        "bob@example.test",
        input=f"Subject: C {tok}\n\nc\n",
    )
    # D: relayed; one recipient taken, one refused (a bounce to alice)
    with smtp(server) as client:
        data = f"Subject: D {tok}\r\n\r\nd\r\n"
        rcpts = ["ok@remote.example", "no@remote.example"]
        client.sendmail("alice@example.test", rcpts, data)

    remote.wait_messages(1)
    server.wait_delivered("alice", 3)  # A, B and the DSN for D
    server.wait_delivered("bob", 2)  # B and C
    server.wait_queue_empty()
    wait_log(maillog(server).read_text, r"status=sent \(delivered to maildir\)", 5)

    assert summary(server) == {
        "received": 4,
        "delivered": 6,  # A:1 B:2 C:1 D:1 and the DSN to alice
        "forwarded": 0,
        "deferred": 0,
        "bounced": 1,
        "rejected": 1,
    }


def test_pflogsumm_does_not_count_transactions_without_recipients(
    logged_server: RoostServer,
) -> None:
    server = logged_server
    tok = uuid.uuid4().hex
    with smtp(server) as client:
        client.ehlo("client.example.org")
        # MAIL, a refused RCPT, RSET: nothing was received
        assert client.mail("ann@example.org")[0] == 250
        assert client.rcpt("nobody@example.test")[0] == 550
        client.rset()
        # MAIL and RSET alone
        assert client.mail("ann@example.org")[0] == 250
        client.rset()
        # one real message
        data = f"Subject: {tok}\r\n\r\nx\r\n"
        client.sendmail("ann@example.org", ["alice@example.test"], data)
    server.wait_for_text("alice", tok.encode())
    server.wait_queue_empty()
    wait_log(maillog(server).read_text, r"status=sent", 1)

    totals = summary(server)
    assert (totals["received"], totals["delivered"], totals["rejected"]) == (1, 1, 1)
