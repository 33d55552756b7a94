"""Shared set-up for the local delivery tests: settings, users, aliases."""

from __future__ import annotations

from pathlib import Path

from roost.config import from_values
from roost.config.settings import Settings
from roost.delivery.aliases import AliasTable
from roost.delivery.local import LocalDelivery, LocalRecipients


class FakeUsers:
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def exists(self, name: str) -> bool:
        return name in self.names


def make_settings(tmp_path: Path, **extra: str) -> Settings:
    values = {
        "myhostname": "mx.example.test",
        "mydomain": "example.test",
        "mydestination": "example.test, bücher.test, localhost",
        "data_directory": str(tmp_path / "data"),
        "alias_maps": f"hash:{tmp_path / 'aliases'}",
    }
    values.update(extra)
    return from_values(values)


def make_local(
    tmp_path: Path, aliases: str = "", users: tuple[str, ...] = ("alice", "bob")
) -> tuple[Settings, LocalRecipients, LocalDelivery]:
    (tmp_path / "aliases").write_text(aliases)
    settings = make_settings(tmp_path)
    recipients = LocalRecipients(
        settings, FakeUsers(*users), AliasTable([tmp_path / "aliases"])
    )
    return settings, recipients, LocalDelivery(settings, recipients)
