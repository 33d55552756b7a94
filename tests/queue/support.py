"""A queue manager on a temporary directory, with a clock the test turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from roost.config import from_values
from roost.config.settings import Settings
from roost.delivery.aliases import AliasTable
from roost.delivery.local import LocalDelivery, LocalRecipients
from roost.mailstore import maildir
from roost.queue import Envelope, Recipient, Spool
from roost.queue.manager import QueueManager, RemoteTransport

MESSAGE = (
    b"From: Ann <ann@example.org>\r\nTo: alice@example.test\r\n"
    b"Subject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nbody line\r\n"
)


class FakeUsers:
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def exists(self, name: str) -> bool:
        return name in self.names


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    settings: Settings
    spool: Spool
    manager: QueueManager
    clock: Clock
    tmp: Path
    users: FakeUsers = field(default_factory=FakeUsers)

    def mailbox(self, user: str) -> list[bytes]:
        box = maildir.mailbox_path(self.settings.mailbox_directory, user)
        paths = []
        for sub in ("new", "cur"):
            if (box / sub).is_dir():
                paths.extend(sorted((box / sub).iterdir()))
        return [p.read_bytes() for p in paths]


def make_settings(tmp: Path, **extra: str) -> Settings:
    values = {
        "myhostname": "mx.example.test",
        "mydomain": "example.test",
        "mydestination": "$myhostname, example.test, localhost",
        "data_directory": str(tmp / "data"),
        "alias_maps": f"hash:{tmp / 'aliases'}",
        "minimal_backoff_time": "300s",
        "maximal_backoff_time": "4000s",
    }
    values.update(extra)
    return from_values(values)


def make_rig(
    tmp: Path,
    *,
    aliases: str = "",
    users: tuple[str, ...] = ("alice", "bob", "postmaster"),
    remote: RemoteTransport | None = None,
    **extra: str,
) -> Rig:
    (tmp / "aliases").write_text(aliases)
    settings = make_settings(tmp, **extra)
    fake_users = FakeUsers(*users)
    recipients = LocalRecipients(settings, fake_users, AliasTable([tmp / "aliases"]))
    local = LocalDelivery(settings, recipients)
    spool = Spool(settings.queue_directory)
    clock = Clock()
    manager = QueueManager(settings, spool, local, remote=remote, clock=clock)
    return Rig(settings, spool, manager, clock, tmp, fake_users)


def envelope(
    *rcpts: str, sender: str = "ann@example.org", arrival: float = 0.0, **kw: object
) -> Envelope:
    return Envelope(
        mail_from=sender,
        recipients=[Recipient(r) for r in rcpts],
        arrival_time=arrival,
        **kw,  # type: ignore[arg-type]
    )
