"""One mailbox shared by every session of the process, and each session's
view of it.

``Mailbox`` holds the index in memory (UID -> ``Message``), loads and
rescans it from disk in a worker thread, and makes every change (append,
flags, expunge, copy) under one asyncio lock, with the disk work in a
thread.  After a change it tells each open ``MailboxView``.

A ``MailboxView`` is what one IMAP session sees: its own list of UIDs, so
its sequence numbers move only when it tells its client (RFC 3501 5.5 and
7.4.1, case 023).  Changes wait in the view until the session drains them
into untagged EXPUNGE / EXISTS / FETCH responses at a point where the RFC
allows them.  ``changed`` wakes a session in IDLE (RFC 2177).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from roost.mailstore import cache, index, mime
from roost.mailstore.errors import MailstoreError
from roost.mailstore.maildir import (
    INFO_SEPARATOR,
    deliver,
    fsync_dir,
    name_with_flags,
    unique_name,
)
from roost.protocols.imap.errors import ImapError
from roost.protocols.imap.grammar import SequenceSet

log = logging.getLogger("roost.imapd")

_T = TypeVar("_T")

PARSED_CACHE_ENTRIES = 64
PARSED_CACHE_BYTES = 64 * 1024 * 1024
HEADER_CACHE_ENTRIES = 50_000
HEAD_BYTES = 16 * 1024
# How long the stamp of the Maildir may rest on our own changes alone
# before the directories are listed again anyway (see ``_own_change``).
OWN_STAMP_TRUST_S = 1.0


@dataclass(frozen=True, slots=True)
class Message:
    uid: int
    base: str
    subdir: str
    filename: str
    flags: frozenset[str]
    other: str  # info letters Roost does not interpret, kept as they are
    size: int  # octets as served: CRLF line ends (RFC 3501 2.3.4)
    internaldate: float  # the file's mtime, as dovecot

    def path(self, maildir: Path) -> Path:
        return maildir / self.subdir / self.filename


@dataclass(slots=True)
class _ScanResult:
    uidlist: index.UidList
    keywords: list[str]
    messages: dict[int, Message]
    stamp: tuple[int, ...]


class Mailbox:
    """The shared state of one Maildir folder."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.lock = asyncio.Lock()
        self.uidvalidity = 0
        self.uidnext = 1
        self.recent_upto = 0  # highest UID some session already took as \Recent
        self._uidlist: index.UidList | None = None
        self._keywords: list[str] = []
        self._messages: dict[int, Message] = {}
        self._uids: list[int] = []
        self._stamp: tuple[int, ...] = ()
        self._trusted_since: float | None = None  # monotonic, see _own_change
        self._scans_begun = 0  # refreshes begun under the lock
        self._fresh_upto = 0  # the last of them that ended without error
        self._views: set[MailboxView] = set()
        self._cache_lock = threading.Lock()
        self._parsed: OrderedDict[int, tuple[bytes, mime.Part]] = OrderedDict()
        self._parsed_bytes = 0
        self._headers: dict[int, list[tuple[str, bytes]]] = {}
        self._header_index: dict[int, dict[str, list[bytes]]] = {}
        self._derived: dict[tuple[int, str], bytes] = {}
        self.is_deleted = False
        self.gone = ""  # "deleted" or "renamed" once is_deleted is set
        self._rescan_task: asyncio.Task[None] | None = None
        self._rescan_again = False

    # --- reading the index (loop thread) -------------------------------

    @property
    def uids(self) -> list[int]:
        return self._uids

    @property
    def keywords(self) -> list[str]:
        return [k for k in self._keywords if k]

    def get(self, uid: int) -> Message | None:
        return self._messages.get(uid)

    def messages(self) -> list[Message]:
        return [self._messages[uid] for uid in self._uids]

    # --- loading and rescanning -----------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Pick up changes made by other programs (new/ drops, deletions).

        Without ``force`` the directories are listed only when their
        mtimes moved; ``force`` lists them anyway (a delivery we were told
        of may fall in the same mtime tick as the last scan).
        """
        asked = self._scans_begun
        async with self.lock:
            if not force and not self.is_deleted and self._fresh_upto > asked:
                # a refresh that began after we asked has ended while we
                # waited for the lock: it saw the disk later than our call
                return
            await self._refresh_locked(force)

    def rescan_soon(self) -> None:
        """Rescan in a task of its own, now: a delivery in this process
        told us (``roost.mailstore.notify``).  Notices that arrive while a
        rescan runs are folded into one more rescan."""
        if not self._views or self.is_deleted:
            return  # nobody to tell; the next SELECT or STATUS rescans
        if self._rescan_task is not None and not self._rescan_task.done():
            self._rescan_again = True
            return
        self._rescan_task = asyncio.ensure_future(self._rescan())

    async def _rescan(self) -> None:
        self._rescan_again = True
        while self._rescan_again and not self.is_deleted:
            self._rescan_again = False
            try:
                await self.refresh(force=True)
            except (MailstoreError, OSError) as error:
                # the sessions' own refresh reports it to their clients
                log.debug("rescan of %s failed: %s", self.path, error)
                return

    async def _refresh_locked(self, force: bool = False) -> None:
        if self.is_deleted:
            raise MailstoreError("NONEXISTENT", "Mailbox does not exist")
        self._scans_begun += 1
        begun = self._scans_begun
        known = self._messages  # the scan only reads it, in one thread hop
        since = self._trusted_since
        if since is not None and time.monotonic() - since > OWN_STAMP_TRUST_S:
            force = True
        seen = self._stamp if self._uidlist is not None and not force else None
        result = await asyncio.to_thread(
            self._scan, seen, known, self._uidlist, self._keywords
        )
        if result is not None:
            self._apply_scan(result)
        self._fresh_upto = begun

    def _scan(
        self,
        seen: tuple[int, ...] | None,
        known: dict[int, Message],
        uidlist: index.UidList | None,
        old_keywords: list[str],
    ) -> _ScanResult | None:
        """List the Maildir and match files to UIDs; None when the
        directories have not changed since the stamp ``seen``.

        Messages whose file name did not change keep their ``Message``
        object, so a rescan of a large mailbox costs two directory
        listings and a dictionary lookup per file.
        """
        stamp = index.dir_stamp(self.path)
        if stamp == seen:
            return None
        if not (self.path / "cur").is_dir():
            raise MailstoreError("NONEXISTENT", "Mailbox does not exist")
        if uidlist is None:
            uidlist = index.read_uidlist(self.path) or index.UidList(
                index.new_uidvalidity(self.path), 1
            )
        uidlist = index.UidList(
            uidlist.uidvalidity,
            uidlist.uidnext,
            dict(uidlist.uids),
            dict(uidlist.sizes),
        )
        keywords = index.read_keywords(self.path)
        same_keywords = keywords == old_keywords
        files = index.list_messages(self.path)
        messages: dict[int, Message] = {}
        changed = False

        new_bases: list[str] = []
        for base, entry in files.items():
            uid = uidlist.uids.get(base)
            if uid is None:
                new_bases.append(base)
                continue
            old = known.get(uid)
            if old is not None and old.base != base:
                old = None
            if (
                old is not None
                and same_keywords
                and old.filename == entry.filename
                and old.subdir == entry.subdir
            ):
                messages[uid] = old
                continue
            message = self._message_of(entry, uid, old, uidlist, keywords)
            if message is not None:
                changed |= self._remember_size(uidlist, message)
                messages[uid] = message

        # UIDs go to new files in name order: by the second of delivery
        for base in sorted(new_bases):
            uid = uidlist.uidnext
            message = self._message_of(files[base], uid, None, uidlist, keywords)
            if message is None:
                continue
            uidlist.uidnext += 1
            uidlist.uids[base] = uid
            self._remember_size(uidlist, message)
            messages[uid] = message
            changed = True

        if len(uidlist.uids) != len(messages):
            for base in [b for b in uidlist.uids if b not in files]:
                del uidlist.uids[base]
                uidlist.sizes.pop(base, None)
                changed = True
        if changed or not (self.path / index.UIDLIST).exists():
            index.write_uidlist(self.path, uidlist)
        return _ScanResult(uidlist, keywords, messages, stamp)

    @staticmethod
    def _remember_size(uidlist: index.UidList, message: Message) -> bool:
        if message.base in uidlist.sizes:
            return False
        uidlist.sizes[message.base] = message.size
        return True

    def _message_of(
        self,
        entry: index.FileEntry,
        uid: int,
        old: Message | None,
        uidlist: index.UidList,
        keywords: list[str],
    ) -> Message | None:
        flags, other = index.flags_of_info(entry.info, keywords)
        if old is not None:
            return replace(
                old,
                subdir=entry.subdir,
                filename=entry.filename,
                flags=flags,
                other=other,
            )
        # a string path: pathlib's joins cost more than the stat itself
        path = f"{self.path}/{entry.subdir}/{entry.filename}"
        try:
            mtime = os.stat(path).st_mtime
            size = uidlist.sizes.get(entry.base)
            if size is None:
                size = index.crlf_size_from_name(entry.base)
            if size is None:
                with open(path, "rb") as file:
                    size = mime.crlf_size(file.read())
        except FileNotFoundError:
            return None
        return Message(
            uid,
            entry.base,
            entry.subdir,
            entry.filename,
            flags,
            other,
            size,
            mtime,
        )

    def _apply_scan(self, result: _ScanResult) -> None:
        first_load = self._uidlist is None
        old = self._messages
        self._uidlist = result.uidlist
        self._keywords = result.keywords
        self.uidvalidity = result.uidlist.uidvalidity
        self.uidnext = result.uidlist.uidnext
        self._messages = result.messages
        self._uids = sorted(result.messages)
        self._stamp = result.stamp
        self._trusted_since = None
        if first_load:
            return
        gone = [uid for uid in old if uid not in result.messages]
        added = [uid for uid in self._uids if uid not in old]
        flagged = [
            uid
            for uid, m in result.messages.items()
            if (was := old.get(uid)) is not None
            and was is not m
            and was.flags != m.flags
        ]
        self._forget(gone)
        self._notify(expunged=gone, appended=added, flags=flagged, origin=None)

    def _own_change(self, before: tuple[int, ...], after: tuple[int, ...]) -> None:
        """Adopt ``after`` (the stamp once our own change was made, under
        the lock) as the stamp of what the index holds, so the next
        refresh does not list the Maildir again for a change we made.

        Only when ``before`` (taken just before the change) is the stamp
        the index was built from, so nothing else had changed, and only
        when new/ did not move: other programs deliver into new/, and a
        change there is always listed.  A change by another program in
        cur/ that falls between ``before`` and ``after``, or in the same
        mtime tick, would be hidden; listing again at least once every
        ``OWN_STAMP_TRUST_S`` while we live on our own stamps bounds that.
        """
        if self._uidlist is None or before != self._stamp:
            return
        if after[:2] != before[:2] or after == before:
            return
        self._stamp = after
        if self._trusted_since is None:
            self._trusted_since = time.monotonic()

    def mark_gone(self, reason: str) -> None:
        """The folder was deleted or renamed: this object is stale.  Every
        view is woken so a session in IDLE can end (see imapd)."""
        self.is_deleted = True
        self.gone = reason
        for view in self._views:
            view.changed.set()

    # --- views -----------------------------------------------------------

    def open_view(self, readonly: bool) -> MailboxView:
        view = MailboxView(self, readonly)
        self._views.add(view)
        return view

    def close_view(self, view: MailboxView) -> None:
        self._views.discard(view)

    def _notify(
        self,
        *,
        expunged: Iterable[int] = (),
        appended: Iterable[int] = (),
        flags: Iterable[int] = (),
        origin: MailboxView | None,
    ) -> None:
        expunged, appended, flags = list(expunged), list(appended), list(flags)
        for view in list(self._views):
            view.note(expunged, appended, flags if view is not origin else [])

    def claim_recent(self, uids: list[int]) -> list[int]:
        """Give the \\Recent flag of new UIDs to the first session to ask."""
        claimed = [uid for uid in uids if uid > self.recent_upto]
        if uids:
            self.recent_upto = max(self.recent_upto, max(uids))
        return claimed

    # --- changes ---------------------------------------------------------

    async def append(
        self, data: bytes, flags: frozenset[str], internaldate: float | None
    ) -> int:
        """Store a message (LF line ends) and return its UID."""
        async with self.lock:
            await self._refresh_locked()
            keywords = await self._with_keywords(flags)
            info = index.info_of_flags(flags, "", keywords)
            size = mime.crlf_size(data)
            before, path, after = await asyncio.to_thread(
                self._stamped, self._deliver, data, info, internaldate
            )
            uid = self._add_file(path, size, internaldate)
            self._own_change(before, after)
            await self._save_uidlist()
        self._notify(appended=[uid], origin=None)
        return uid

    def _stamped(
        self, work: Callable[..., _T], *args: object
    ) -> tuple[tuple[int, ...], _T, tuple[int, ...]]:
        """Run ``work`` (a worker thread) between two stamps of the Maildir."""
        before = index.dir_stamp(self.path)
        result = work(*args)
        return before, result, index.dir_stamp(self.path)

    def _deliver(self, data: bytes, info: str, internaldate: float | None) -> Path:
        # an empty info still files the message in cur/ ("seen by a client")
        path = deliver(self.path, data, flags=info, mtime=internaldate)
        if not info:
            target = self.path / "cur" / (path.name + INFO_SEPARATOR)
            os.rename(path, target)
            fsync_dir(self.path / "cur")
            return target
        return path

    def _add_file(self, path: Path, size: int, internaldate: float | None) -> int:
        assert self._uidlist is not None
        filename = path.name
        base = filename.split(":", 1)[0]
        flags, other = index.flags_of_info(
            filename.partition(INFO_SEPARATOR)[2], self._keywords
        )
        uid = self._uidlist.uidnext
        self._uidlist.uidnext += 1
        self._uidlist.uids[base] = uid
        self._uidlist.sizes[base] = size
        self.uidnext = self._uidlist.uidnext
        mtime = internaldate if internaldate is not None else _mtime(path)
        message = Message(
            uid, base, path.parent.name, filename, flags, other, size, mtime
        )
        self._messages[uid] = message
        self._uids.append(uid)
        return uid

    async def _save_uidlist(self) -> None:
        assert self._uidlist is not None
        snapshot = index.UidList(
            self._uidlist.uidvalidity,
            self._uidlist.uidnext,
            dict(self._uidlist.uids),
            dict(self._uidlist.sizes),
        )
        await asyncio.to_thread(index.write_uidlist, self.path, snapshot)

    async def _with_keywords(self, flags: Iterable[str]) -> list[str]:
        wanted = [f for f in flags if not f.startswith("\\")]
        missing = [f for f in wanted if f not in self._keywords]
        if not missing:
            return self._keywords
        names = list(self._keywords)
        for keyword in missing:
            if "" in names:
                names[names.index("")] = keyword
            elif len(names) < index.MAX_KEYWORDS:
                names.append(keyword)
            else:
                raise MailstoreError("LIMIT", "Too many keywords")
        await asyncio.to_thread(index.write_keywords, self.path, names)
        self._keywords = names
        return names

    async def store(
        self,
        uids: list[int],
        mode: str,
        flags: frozenset[str],
        origin: MailboxView | None,
    ) -> dict[int, frozenset[str]]:
        """Set (``""``), add (``+``) or remove (``-``) flags.

        Returns the new flags of every message named that still exists;
        absent UIDs are ignored (RFC 3501 6.4.8).
        """
        async with self.lock:
            keywords = await self._with_keywords(flags)
            plan: list[tuple[Message, frozenset[str]]] = []
            result: dict[int, frozenset[str]] = {}
            for uid in uids:
                message = self._messages.get(uid)
                if message is None:
                    continue
                new = _combine(message.flags, mode, flags)
                result[uid] = new
                if new != message.flags:
                    plan.append((message, new))
            if not plan:
                renamed: list[Message] = []
            else:
                before, renamed, after = await asyncio.to_thread(
                    self._stamped, self._rename_all, plan, keywords
                )
                for message in renamed:
                    self._messages[message.uid] = message
                self._own_change(before, after)
        self._notify(flags=[m.uid for m in renamed], origin=origin)
        return result

    def _rename_all(
        self, plan: list[tuple[Message, frozenset[str]]], keywords: list[str]
    ) -> list[Message]:
        done: list[Message] = []
        for message, flags in plan:
            info = index.info_of_flags(flags, message.other, keywords)
            filename = name_with_flags(message.base, info)
            source = self._locate(message)
            if source is None:
                continue
            target = self.path / "cur" / filename
            if source != target:
                os.rename(source, target)
            done.append(replace(message, subdir="cur", filename=filename, flags=flags))
        return done

    def _locate(self, message: Message) -> Path | None:
        """The message's file now: another program may have renamed it."""
        path = message.path(self.path)
        if path.exists():
            return path
        for subdir in ("cur", "new"):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(self.path / subdir):
                    if name.split(":", 1)[0] == message.base:
                        return self.path / subdir / name
        return None

    async def expunge(self, uids: list[int]) -> list[int]:
        """Remove messages; returns the UIDs removed."""
        async with self.lock:
            targets = [self._messages[u] for u in uids if u in self._messages]
            before, _none, after = await asyncio.to_thread(
                self._stamped, self._unlink_all, targets
            )
            removed = [m.uid for m in targets]
            assert self._uidlist is not None
            for message in targets:
                self._uidlist.uids.pop(message.base, None)
                self._uidlist.sizes.pop(message.base, None)
            self._forget(removed)
            self._own_change(before, after)
            if removed:
                await self._save_uidlist()
        self._notify(expunged=removed, origin=None)
        return removed

    def _unlink_all(self, targets: list[Message]) -> None:
        for message in targets:
            path = self._locate(message)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for subdir in ("cur", "new"):
            fsync_dir(self.path / subdir)

    def _forget(self, uids: list[int]) -> None:
        gone = set(uids)
        for uid in gone:
            message = self._messages.pop(uid, None)
            if message is not None:
                cache.SERVED.discard((self.path, message.base))
            self._headers.pop(uid, None)
            self._header_index.pop(uid, None)
            self._derived.pop((uid, "envelope"), None)
            with self._cache_lock:
                entry = self._parsed.pop(uid, None)
                if entry is not None:
                    self._parsed_bytes -= len(entry[0])
        if gone:
            self._uids = [u for u in self._uids if u not in gone]

    async def copy_to(self, uids: list[int], target: Mailbox) -> list[tuple[int, int]]:
        """Copy messages into ``target`` keeping flags and internal dates.

        Returns (source UID, new UID) pairs for COPYUID (RFC 4315).
        """
        sources = [self._messages[u] for u in uids if u in self._messages]
        pairs: list[tuple[int, int]] = []
        async with target.lock:
            await target._refresh_locked()
            all_flags = frozenset(f for m in sources for f in m.flags)
            keywords = await target._with_keywords(all_flags)
            before, made, after = await asyncio.to_thread(
                target._stamped, self._link_all, sources, target, keywords
            )
            for message, path in made:
                uid = target._add_file(path, message.size, message.internaldate)
                pairs.append((message.uid, uid))
            target._own_change(before, after)
            if made:
                await target._save_uidlist()
        target._notify(appended=[new for _old, new in pairs], origin=None)
        return pairs

    def _link_all(
        self, sources: list[Message], target: Mailbox, keywords: list[str]
    ) -> list[tuple[Message, Path]]:
        made: list[tuple[Message, Path]] = []
        for message in sources:
            source = self._locate(message)
            if source is None:
                continue
            flags = frozenset(f for f in message.flags if f != "\\Recent")
            info = index.info_of_flags(flags, message.other, keywords)
            base = f"{unique_name()},S={source.stat().st_size}"
            final = target.path / "cur" / name_with_flags(base, info)
            tmp = target.path / "tmp" / base
            try:
                os.link(source, tmp)  # Maildir copies may share the file
            except OSError:
                tmp.write_bytes(source.read_bytes())
            os.rename(tmp, final)
            made.append((message, final))
        if made:
            fsync_dir(target.path / "cur")
        return made

    # --- message data (worker threads) ------------------------------------

    def read(self, message: Message) -> bytes:
        """The stored octets (LF form).  Raises MailstoreError if gone."""
        for _attempt in range(3):
            path = self._locate(message)
            if path is None:
                break
            with contextlib.suppress(FileNotFoundError):
                return path.read_bytes()
        raise MailstoreError("EXPUNGEISSUED", "Message was expunged")

    def _read_head(self, message: Message) -> tuple[bytes, bool]:
        """The start of a message, enough to hold its header as a rule,
        and whether that is the whole message."""
        for _attempt in range(3):
            path = self._locate(message)
            if path is None:
                break
            with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
                head = file.read(HEAD_BYTES)
                if len(head) < HEAD_BYTES:
                    return head, True
                if b"\n\n" in head or b"\r\n\r\n" in head:
                    return head, False
                return head + file.read(), True
        raise MailstoreError("EXPUNGEISSUED", "Message was expunged")

    def parsed(self, message: Message) -> tuple[bytes, mime.Part]:
        """The message as served (CRLF) and its MIME tree, cached."""
        hit = self.cached_parsed(message)
        if hit is not None:
            return hit
        data = self.served(message)
        entry = (data, mime.parse(data))
        with self._cache_lock:
            self._parsed[message.uid] = entry
            self._parsed_bytes += len(data)
            while self._parsed and (
                len(self._parsed) > PARSED_CACHE_ENTRIES
                or self._parsed_bytes > PARSED_CACHE_BYTES
            ):
                _uid, (old, _part) = self._parsed.popitem(last=False)
                self._parsed_bytes -= len(old)
        return entry

    def served(self, message: Message) -> bytes:
        """The message as served (CRLF), without parsing it; from memory
        when it is there (see ``roost.mailstore.cache``)."""
        data = self.cached_served(message)
        if data is None:
            data = mime.to_crlf(self.read(message))
            cache.SERVED.put((self.path, message.base), data)
        return data

    # --- the same, from memory only (the loop may call these) ------------

    def cached_parsed(self, message: Message) -> tuple[bytes, mime.Part] | None:
        with self._cache_lock:
            hit = self._parsed.get(message.uid)
            if hit is not None:
                self._parsed.move_to_end(message.uid)
            return hit

    def cached_served(self, message: Message) -> bytes | None:
        with self._cache_lock:
            hit = self._parsed.get(message.uid)
        if hit is not None:
            return hit[0]
        return cache.SERVED.get((self.path, message.base))

    def cached_derived(self, message: Message, kind: str) -> bytes | None:
        return self._derived.get((message.uid, kind))

    def headers(self, message: Message) -> list[tuple[str, bytes]]:
        """The top-level header fields, cached for SEARCH and ENVELOPE."""
        cached = self._headers.get(message.uid)
        if cached is not None:
            return cached
        head, is_whole = self._read_head(message)
        data = mime.to_crlf(head)
        if is_whole:
            # a small message was read whole: BODY[] needs no disk later
            cache.SERVED.put((self.path, message.base), data)
        end = _header_length(data)
        fields = mime.parse_headers(data[:end])
        if len(self._headers) < HEADER_CACHE_ENTRIES:
            self._headers[message.uid] = fields
        return fields

    def header_values(self, message: Message, name: str) -> list[bytes]:
        """Raw values of the top-level fields called ``name`` (lower
        case), from a per-message index kept beside the header cache."""
        fields = self._header_index.get(message.uid)
        if fields is None:
            fields = {}
            for key, value in self.headers(message):
                fields.setdefault(key.lower(), []).append(value)
            if len(self._header_index) < HEADER_CACHE_ENTRIES:
                self._header_index[message.uid] = fields
        return fields.get(name, [])

    def derived(
        self, message: Message, kind: str, compute: Callable[[], bytes]
    ) -> bytes:
        """A value computed from a message's octets (they never change),
        cached per UID: the rendered ENVELOPE, for instance."""
        key = (message.uid, kind)
        value = self._derived.get(key)
        if value is None:
            value = compute()
            if len(self._derived) < HEADER_CACHE_ENTRIES:
                self._derived[key] = value
        return value


def _header_length(data: bytes) -> int:
    blank = data.find(b"\r\n\r\n")
    return len(data) if blank < 0 else blank + 4


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _combine(old: frozenset[str], mode: str, flags: frozenset[str]) -> frozenset[str]:
    if mode == "+":
        return old | flags
    if mode == "-":
        return old - flags
    return flags


class MailboxView:
    """One session's view of a mailbox: its own sequence numbers."""

    def __init__(self, mailbox: Mailbox, readonly: bool) -> None:
        self.mailbox = mailbox
        self.readonly = readonly
        self.uids: list[int] = list(mailbox.uids)
        self.recent: set[int] = set()
        if not readonly:
            self.recent = set(mailbox.claim_recent(self.uids))
        self.changed = asyncio.Event()
        self._expunged: set[int] = set()
        self._new: list[int] = []
        self._flags: set[int] = set()

    def note(self, expunged: list[int], appended: list[int], flags: list[int]) -> None:
        """Called by the mailbox: remember changes until they may be told."""
        known = set(self.uids)
        for uid in expunged:
            if uid in known:
                self._expunged.add(uid)
            elif uid in self._new:
                self._new.remove(uid)
        last = self.uids[-1] if self.uids else 0
        for uid in appended:
            if uid > last and uid not in self._new:
                self._new.append(uid)
        self._flags.update(u for u in flags if u in known or u in self._new)
        if expunged or appended or flags:
            self.changed.set()

    def seq_of(self, uid: int) -> int | None:
        index_ = bisect.bisect_left(self.uids, uid)
        if index_ < len(self.uids) and self.uids[index_] == uid:
            return index_ + 1
        return None

    def resolve(self, sequence_set: SequenceSet, is_uid: bool) -> list[int]:
        """UIDs named by a sequence set, ascending (case 022).

        Message numbers beyond the mailbox, and ``*`` in an empty one, are
        BAD (RFC 3501 9); absent UIDs are ignored (RFC 3501 6.4.8).
        """
        if not is_uid:
            count = len(self.uids)
            if count == 0 or sequence_set.max_number(count) > count:
                raise ImapError.bad("Invalid sequence number")
            chosen: set[int] = set()
            for low, high in sequence_set.resolved(count):
                chosen.update(self.uids[low - 1 : high])
            return sorted(chosen)
        largest = self.uids[-1] if self.uids else self.mailbox.uidnext
        found: set[int] = set()
        for low, high in sequence_set.resolved(largest):
            start = bisect.bisect_left(self.uids, low)
            stop = bisect.bisect_right(self.uids, high)
            found.update(self.uids[start:stop])
        return sorted(found)

    def is_expunge_pending(self, uid: int) -> bool:
        return uid in self._expunged

    def drain(self, allow_expunge: bool) -> list[tuple[str, int, int]]:
        """Pending changes as ("EXPUNGE", seq, uid), ("EXISTS", n, 0),
        ("RECENT", n, 0) and ("FLAGS", seq, uid) items, applied to the view.

        EXPUNGE is held back when ``allow_expunge`` is false: during FETCH,
        STORE and SEARCH (RFC 3501 7.4.1).
        """
        items: list[tuple[str, int, int]] = []
        if allow_expunge and self._expunged:
            for uid in sorted(self._expunged):
                seq = self.seq_of(uid)
                if seq is not None:
                    del self.uids[seq - 1]
                    items.append(("EXPUNGE", seq, uid))
                self.recent.discard(uid)
                self._flags.discard(uid)
            self._expunged.clear()
        if self._new:
            self.uids.extend(self._new)
            if not self.readonly:
                self.recent.update(self.mailbox.claim_recent(self._new))
            self._new.clear()
            items.append(("EXISTS", len(self.uids), 0))
            items.append(("RECENT", len(self.recent), 0))
        for uid in sorted(self._flags):
            seq = self.seq_of(uid)
            if seq is not None and uid not in self._expunged:
                items.append(("FLAGS", seq, uid))
        self._flags.clear()
        if not self._expunged:
            self.changed.clear()
        return items
