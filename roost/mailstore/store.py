"""Per-user Maildir++ stores: folders, subscriptions, special use.

``Mailstore(mailbox_directory)`` is made once per process; it keeps one
``Mailbox`` object per folder so every session of every user shares it
(that is how sessions hear of each other's changes).
``Mailstore.user(name)`` gives a ``UserStore`` for one user's Maildir.

``create_user(settings, name)`` makes a new user's Maildir with the
folders RFC 6154 names: Sent, Drafts, Trash and Junk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import typing
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from roost.mailstore import index, names, notify
from roost.mailstore.errors import MailstoreError
from roost.mailstore.mailbox import Mailbox
from roost.mailstore.maildir import ensure, fsync_dir, mailbox_path, unique_name

SUBSCRIPTIONS = "roost-subscriptions"
SPECIAL_USE = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
}
MAX_OPEN_MAILBOXES = 512
MAX_FOLDERS = 1000


class _HasMailboxDirectory(typing.Protocol):
    @property
    def mailbox_directory(self) -> Path: ...


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    attributes: tuple[str, ...]  # \HasChildren, \Noselect, \Sent, ...


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    messages: int
    recent: int
    uidnext: int
    uidvalidity: int
    unseen: int
    size: int


def create_user(settings: _HasMailboxDirectory, name: str) -> Path:
    """Create ``name``'s Maildir with its special-use folders (blocking).

    Existing folders are left alone, so this may be called again.  Returns
    the INBOX path.
    """
    root = mailbox_path(settings.mailbox_directory, name)
    ensure(root)
    for folder in SPECIAL_USE:
        ensure(root / names.folder_dirname(folder))  # type: ignore[operator]
    subscriptions = root / SUBSCRIPTIONS
    if not subscriptions.exists():
        lines = ["INBOX", *SPECIAL_USE]
        subscriptions.write_text("\n".join(lines) + "\n", "utf-8")
    return root


class Mailstore:
    """All users' mailboxes in this process."""

    def __init__(self, mailbox_directory: Path) -> None:
        self.mailbox_directory = mailbox_directory
        self._open: OrderedDict[Path, Mailbox] = OrderedDict()
        self._is_subscribed = False

    def _subscribe(self) -> None:
        # on the loop, at the first mailbox: before that nobody listens
        if not self._is_subscribed:
            notify.subscribe(self.changed, asyncio.get_running_loop())
            self._is_subscribed = True

    def changed(self, maildir: Path) -> None:
        """A delivery in this process wrote into ``maildir`` (called on
        the loop, by ``roost.mailstore.notify``): sessions that have it
        open hear of it now, IDLE ones at once (RFC 2177)."""
        mailbox = self._open.get(maildir)
        if mailbox is not None:
            mailbox.rescan_soon()

    def user(self, name: str) -> UserStore:
        return UserStore(self, mailbox_path(self.mailbox_directory, name))

    def mailbox_at(self, path: Path, name: str) -> Mailbox:
        """The shared Mailbox object of a folder directory."""
        self._subscribe()
        mailbox = self._open.get(path)
        if mailbox is None or mailbox.is_deleted:
            mailbox = Mailbox(path, name)
            self._open[path] = mailbox
            self._evict()
        self._open.move_to_end(path)
        return mailbox

    def open_mailbox(self, path: Path) -> Mailbox | None:
        """The shared Mailbox of a folder if one is open, else None."""
        mailbox = self._open.get(path)
        if mailbox is None or mailbox.is_deleted:
            return None
        self._open.move_to_end(path)
        return mailbox

    def _evict(self) -> None:
        for path in list(self._open):
            if len(self._open) <= MAX_OPEN_MAILBOXES:
                break
            if not self._open[path]._views:
                del self._open[path]

    def forget(self, path: Path, reason: str) -> None:
        """Drop a folder that was deleted or renamed on disk; sessions that
        have it selected learn it from ``Mailbox.gone``."""
        mailbox = self._open.pop(path, None)
        if mailbox is not None:
            mailbox.mark_gone(reason)


class UserStore:
    """One user's Maildir++: INBOX and ``.Folder`` directories."""

    def __init__(self, store: Mailstore, root: Path) -> None:
        self.store = store
        self.root = root

    def path_of(self, name: str) -> Path:
        try:
            return names.folder_path(self.root, name)
        except names.InvalidName:
            raise MailstoreError("CANNOT", "Invalid mailbox name") from None

    async def mailbox(self, name: str) -> Mailbox:
        """Open an existing mailbox (loaded and rescanned)."""
        name = names.normalise(name)
        path = self.path_of(name)
        open_ = self.store.open_mailbox(path)
        if open_ is not None:
            try:
                await open_.refresh()  # one thread hop when nothing changed
                return open_
            except MailstoreError as error:
                if error.code != "NONEXISTENT":
                    raise
                self.store.forget(path, "deleted")  # removed by another program
        exists = await asyncio.to_thread((path / "cur").is_dir)
        if not exists:
            if name == names.INBOX:
                await asyncio.to_thread(ensure, path)
            else:
                raise MailstoreError("NONEXISTENT", "Mailbox does not exist")
        mailbox = self.store.mailbox_at(path, name)
        await mailbox.refresh()
        return mailbox

    async def exists(self, name: str) -> bool:
        path = self.path_of(name)
        return await asyncio.to_thread((path / "cur").is_dir)

    async def folders(self) -> list[FolderInfo]:
        """Every mailbox with its LIST attributes (RFC 3501, 3348, 6154)."""
        found = await asyncio.to_thread(self._folder_names)
        all_names = set(found) | {names.INBOX}
        implied: set[str] = set()
        for name in all_names:
            parts = name.split(names.SEPARATOR)
            for depth in range(1, len(parts)):
                implied.add(names.SEPARATOR.join(parts[:depth]))
        result: list[FolderInfo] = []
        for name in sorted(all_names | implied, key=_sort_key):
            attrs: list[str] = []
            prefix = name + names.SEPARATOR
            has_children = any(n.startswith(prefix) for n in all_names)
            attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
            if name not in all_names:
                attrs.insert(0, "\\Noselect")
            if name in SPECIAL_USE:
                attrs.append(SPECIAL_USE[name])
            result.append(FolderInfo(name, tuple(attrs)))
        return result

    def _folder_names(self) -> list[str]:
        found: list[str] = []
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return found
        for entry in entries:
            if not entry.startswith(".") or entry in (".", ".."):
                continue
            if not (self.root / entry / "cur").is_dir():
                continue
            with contextlib.suppress(names.InvalidName):
                found.append(names.name_of_dirname(entry))
        return found

    async def create(self, name: str) -> None:
        name = names.normalise(name.rstrip(names.SEPARATOR))
        path = self.path_of(name)
        if name == names.INBOX or await asyncio.to_thread(path.exists):
            raise MailstoreError("ALREADYEXISTS", "Mailbox already exists")
        if len(await asyncio.to_thread(self._folder_names)) >= MAX_FOLDERS:
            raise MailstoreError("LIMIT", "Too many mailboxes")
        await asyncio.to_thread(self._create, path)

    def _create(self, path: Path) -> None:
        ensure(self.root)
        tmp = self.root / "tmp" / f"roost-create-{unique_name()}"
        ensure(tmp)
        try:
            os.rename(tmp, path)  # appears whole, cur/new/tmp at once
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise MailstoreError("ALREADYEXISTS", "Mailbox already exists") from None
        fsync_dir(self.root)

    async def delete(self, name: str) -> None:
        """Remove a mailbox and its messages.

        RFC 3501 6.3.4: a mailbox with inferior names may be deleted; its
        messages go and the name stays as ``\\Noselect``.  In Maildir++ the
        children are sibling directories, so removing the folder's own
        directory does exactly that: LIST then shows the name as an implied
        ``\\Noselect \\HasChildren`` parent (dovecot does the same).  A
        name that is already ``\\Noselect`` has no directory: NONEXISTENT.
        """
        name = names.normalise(name)
        if name == names.INBOX:
            raise MailstoreError("CANNOT", "INBOX cannot be deleted")
        path = self.path_of(name)
        if not await self.exists(name):
            raise MailstoreError("NONEXISTENT", "Mailbox does not exist")
        await asyncio.to_thread(self._remove_dir, path)
        self.store.forget(path, "deleted")

    def _remove_dir(self, path: Path) -> None:
        trash = self.root / "tmp" / f"roost-deleted-{unique_name()}"
        os.rename(path, trash)
        fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)

    async def _children(self, name: str) -> list[str]:
        prefix = name + names.SEPARATOR
        found = await asyncio.to_thread(self._folder_names)
        return [n for n in found if n.startswith(prefix)]

    async def rename(self, old: str, new: str) -> None:
        old, new = names.normalise(old), names.normalise(new.rstrip("/"))
        old_path, new_path = self.path_of(old), self.path_of(new)
        if new == names.INBOX or await asyncio.to_thread(new_path.exists):
            raise MailstoreError("ALREADYEXISTS", "Mailbox already exists")
        # RFC 3501 6.3.5: a \Noselect parent (children, no folder of its
        # own on disk) is renamed too, by moving its children
        has_folder = await self.exists(old)
        children = await self._children(old) if old != names.INBOX else []
        if not has_folder and not children:
            raise MailstoreError("NONEXISTENT", "Mailbox does not exist")
        if new.startswith(old + names.SEPARATOR):
            raise MailstoreError("CANNOT", "Cannot move a mailbox into itself")
        if old == names.INBOX:
            await self._rename_inbox(new)
            return
        moves = [(old_path, new_path)] if has_folder else []
        for child in children:
            moves.append((self.path_of(child), self.path_of(new + child[len(old) :])))
        try:
            await asyncio.to_thread(self._rename_dirs, moves)
        finally:
            for path, _target in moves:  # stale even if only some moved
                self.store.forget(path, "renamed")

    def _rename_dirs(self, moves: list[tuple[Path, Path]]) -> None:
        for source, target in moves:
            os.rename(source, target)
        fsync_dir(self.root)

    async def _rename_inbox(self, new: str) -> None:
        # RFC 3501 6.3.5: renaming INBOX moves its messages, INBOX stays
        await self.create(new)
        inbox = await self.mailbox(names.INBOX)
        target = await self.mailbox(new)
        uids = list(inbox.uids)
        await inbox.copy_to(uids, target)
        await inbox.expunge(uids)

    async def subscriptions(self) -> list[str]:
        return await asyncio.to_thread(self._read_subscriptions)

    def _read_subscriptions(self) -> list[str]:
        try:
            text = (self.root / SUBSCRIPTIONS).read_text("utf-8", "replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    async def subscribe(self, name: str, subscribed: bool) -> None:
        name = names.normalise(name)
        self.path_of(name)  # refuse names that could never exist
        await asyncio.to_thread(self._set_subscription, name, subscribed)

    def _set_subscription(self, name: str, subscribed: bool) -> None:
        current = self._read_subscriptions()
        if subscribed and name not in current:
            current.append(name)
        elif not subscribed:
            current = [n for n in current if n != name]
        ensure(self.root)
        data = ("\n".join(current) + "\n").encode("utf-8")
        tmp = self.root / f".{SUBSCRIPTIONS}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / SUBSCRIPTIONS)

    async def status(self, name: str) -> MailboxStatus:
        mailbox = await self.mailbox(name)
        messages = mailbox.messages()
        recent = sum(1 for m in messages if m.uid > mailbox.recent_upto)
        unseen = sum(1 for m in messages if "\\Seen" not in m.flags)
        return MailboxStatus(
            messages=len(messages),
            recent=recent,
            uidnext=mailbox.uidnext,
            uidvalidity=mailbox.uidvalidity,
            unseen=unseen,
            size=sum(m.size for m in messages),
        )


def _sort_key(name: str) -> tuple[int, str]:
    return (0 if name == names.INBOX else 1, name)


__all__ = [
    "FolderInfo",
    "MailboxStatus",
    "Mailstore",
    "UserStore",
    "create_user",
    "index",
]
