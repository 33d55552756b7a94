"""The storage interface the IMAP service is written against.

``Mailstore`` / ``UserStore`` / ``Mailbox`` in this package are the Maildir
backend.  Another backend (PostgreSQL, say) provides objects of these
shapes; the service needs no change.  Message data is handed out as the
served octets (CRLF) with its parsed MIME tree; flags are IMAP flag names.
"""

from __future__ import annotations

from typing import Protocol

from roost.mailstore import mime
from roost.mailstore.mailbox import Mailbox, MailboxView, Message
from roost.mailstore.store import FolderInfo, MailboxStatus, Mailstore, UserStore


class MailboxBackend(Protocol):
    """One mailbox, shared by the sessions that have it open."""

    name: str
    uidvalidity: int
    uidnext: int

    @property
    def uids(self) -> list[int]: ...

    @property
    def keywords(self) -> list[str]: ...

    def get(self, uid: int) -> Message | None: ...

    def messages(self) -> list[Message]: ...

    async def refresh(self) -> None: ...

    def open_view(self, readonly: bool) -> MailboxView: ...

    def close_view(self, view: MailboxView) -> None: ...

    async def append(
        self, data: bytes, flags: frozenset[str], internaldate: float | None
    ) -> int: ...

    async def store(
        self,
        uids: list[int],
        mode: str,
        flags: frozenset[str],
        origin: MailboxView | None,
    ) -> dict[int, frozenset[str]]: ...

    async def expunge(self, uids: list[int]) -> list[int]: ...

    async def copy_to(
        self, uids: list[int], target: Mailbox
    ) -> list[tuple[int, int]]: ...

    def read(self, message: Message) -> bytes: ...

    def parsed(self, message: Message) -> tuple[bytes, mime.Part]: ...

    def headers(self, message: Message) -> list[tuple[str, bytes]]: ...


class UserStoreBackend(Protocol):
    """One user's mailboxes: the folder tree and subscriptions."""

    async def mailbox(self, name: str) -> MailboxBackend: ...

    async def folders(self) -> list[FolderInfo]: ...

    async def exists(self, name: str) -> bool: ...

    async def create(self, name: str) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def rename(self, old: str, new: str) -> None: ...

    async def subscriptions(self) -> list[str]: ...

    async def subscribe(self, name: str, subscribed: bool) -> None: ...

    async def status(self, name: str) -> MailboxStatus: ...


class MailstoreBackend(Protocol):
    """Every user's mailboxes in this process."""

    def user(self, name: str) -> UserStoreBackend: ...


def conforms(
    store: Mailstore, user: UserStore, mailbox: Mailbox
) -> tuple[MailstoreBackend, UserStoreBackend, MailboxBackend]:
    """Type-level proof (checked by mypy) that the Maildir backend
    implements the interface; returns its arguments unchanged."""
    return store, user, mailbox
