"""Issue 3: virtual mailbox domains and virtual_alias_maps on a running
server, for a client outside mynetworks (so only our own domains are
accepted): users `name@domain` in the same users file, Maildirs under
mailbox_directory/domain/name/Maildir."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RoostServer, poll

pytestmark = pytest.mark.timeout(300)

VIRTUAL = """\
# virtual(5) table
sales@virt.test   carol@virt.test, alice@example.test
info@example.test bob
@old.test         @virt.test
old.test          anything
"""


@pytest.fixture
def virtual_server(
    roost_factory: Callable[..., RoostServer], tmp_path: Path
) -> RoostServer:
    table = tmp_path / "virtual"
    table.write_text(VIRTUAL)
    server = roost_factory(
        mynetworks="192.0.2.0/24",
        virtual_mailbox_domains="virt.test",
        virtual_alias_maps=f"texthash:{table}",
    )
    server.cli("roost", "user", "add", "carol@virt.test", input="carol-secret-1\n")
    return server


def virtual_messages(server: RoostServer, user: str, domain: str) -> list[bytes]:
    box = server.data_dir / "mail" / domain / user / "Maildir" / "new"
    return [p.read_bytes() for p in sorted(box.glob("*"))] if box.is_dir() else []


def rcpt_codes(server: RoostServer, addresses: list[str]) -> dict[str, int]:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        client.ehlo("client.elsewhere.example")
        assert client.mail("ann@elsewhere.example")[0] == 250
        return {a: client.rcpt(a)[0] for a in addresses}


def test_virtual_users_and_aliases_accepted_and_delivered(
    virtual_server: RoostServer,
) -> None:
    server = virtual_server
    assert rcpt_codes(server, ["nobody@virt.test", "alice@virt.test"]) == {
        "nobody@virt.test": 550,
        # local users are not visible in a virtual domain
        "alice@virt.test": 550,
    }

    tok = uuid.uuid4().hex
    data = f"Subject: {tok}\r\n\r\nvirtual\r\n"
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as client:
        rcpts = ["carol+tag@virt.test", "sales@virt.test", "info@example.test"]
        client.sendmail("ann@elsewhere.example", rcpts, data)

    poll(
        lambda: len(virtual_messages(server, "carol", "virt.test")) >= 1,
        60,
        "carol@virt.test's copy",
    )
    server.wait_queue_empty()
    # one copy per mailbox per message, as postfix's duplicate filter
    [copy] = virtual_messages(server, "carol", "virt.test")
    assert copy.split(b"\n", 2)[1] == b"Delivered-To: carol+tag@virt.test"
    assert tok.encode() in copy
    assert "orig_to=<sales@virt.test>" in server.log_text()
    server.wait_for_text("alice", tok.encode())
    server.wait_for_text("bob", tok.encode())


def test_virtual_alias_domain_accepted_from_outside(
    virtual_server: RoostServer,
) -> None:
    server = virtual_server
    codes = rcpt_codes(server, ["carol@old.test", "nobody@old.test"])
    assert codes == {"carol@old.test": 250, "nobody@old.test": 550}
