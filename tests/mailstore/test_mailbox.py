"""Mailstore: UIDs that persist, flags in file names, other programs'
drops, shared views, folder names on disk (case 024)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from roost.mailstore import cache, index, mime, names
from roost.mailstore import mailbox as mailbox_module
from roost.mailstore.errors import MailstoreError
from roost.mailstore.maildir import deliver, mailbox_path
from roost.mailstore.store import Mailstore, create_user
from roost.protocols.imap.grammar import parse_sequence_set


class _Settings:
    def __init__(self, root: Path) -> None:
        self.mailbox_directory = root


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    create_user(_Settings(tmp_path), "alice")
    return tmp_path


def test_create_user_makes_special_use_folders(root: Path) -> None:
    maildir = mailbox_path(root, "alice")
    for folder in ("Sent", "Drafts", "Trash", "Junk"):
        assert (maildir / f".{folder}" / "cur").is_dir()

    async def folders() -> list[tuple[str, tuple[str, ...]]]:
        store = Mailstore(root).user("alice")
        return [(f.name, f.attributes) for f in await store.folders()]

    listing = dict(run(folders()))
    assert listing["Sent"] == ("\\HasNoChildren", "\\Sent")
    assert listing["INBOX"] == ("\\HasNoChildren",)


def test_uids_persist_across_restarts_and_new_drops(root: Path) -> None:
    maildir = mailbox_path(root, "alice")

    async def first() -> tuple[int, list[int]]:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        await box.append(b"Subject: a\n\nx\n", frozenset({"\\Seen"}), None)
        await box.append(b"Subject: b\n\ny\n", frozenset({"Work"}), None)
        return box.uidvalidity, list(box.uids)

    validity, uids = run(first())
    assert uids == [1, 2]
    deliver(maildir, b"Subject: dropped by another program\n\nz\n")

    async def second() -> tuple[int, list[int], list[frozenset[str]]]:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        return box.uidvalidity, list(box.uids), [m.flags for m in box.messages()]

    validity2, uids2, flags = run(second())
    assert validity2 == validity
    assert uids2 == [1, 2, 3]
    assert flags == [frozenset({"\\Seen"}), frozenset({"Work"}), frozenset()]
    assert index.read_keywords(maildir) == ["Work"]
    infos = {name.partition(":2,")[2] for name in os.listdir(maildir / "cur")}
    assert infos == {"S", "a"}


def test_sizes_are_crlf_sizes(root: Path) -> None:
    async def scenario() -> list[int]:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        await box.append(b"Subject: a\n\nline\n", frozenset(), None)
        return [m.size for m in box.messages()]

    assert run(scenario()) == [len(b"Subject: a\r\n\r\nline\r\n")]
    text = (mailbox_path(root, "alice") / index.UIDLIST).read_text()
    assert text.splitlines()[1].startswith("1 W20 :")


def test_views_keep_their_own_sequence_numbers(root: Path) -> None:
    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        for n in range(3):
            await box.append(b"Subject: %d\n\n" % n, frozenset(), None)
        a, b = box.open_view(False), box.open_view(False)
        assert a.recent == {1, 2, 3}
        assert b.recent == set()
        await box.expunge([1])
        # case 023: A still numbers UID 2 as 2 until it may be told
        assert a.resolve(parse_sequence_set("2"), False) == [2]
        assert a.drain(allow_expunge=False) == []
        assert a.drain(allow_expunge=True) == [("EXPUNGE", 1, 1)]
        assert a.resolve(parse_sequence_set("1"), False) == [2]
        await box.store([3], "+", frozenset({"\\Flagged"}), origin=a)
        assert a.drain(True) == []
        assert b.drain(True) == [("EXPUNGE", 1, 1), ("FLAGS", 2, 3)]
        await box.append(b"Subject: new\n\n", frozenset(), None)
        assert a.changed.is_set()
        assert a.drain(True) == [("EXISTS", 3, 0), ("RECENT", 3, 0)]

    run(scenario())


def test_copy_keeps_flags_and_dates(root: Path) -> None:
    async def scenario() -> None:
        store = Mailstore(root).user("alice")
        inbox = await store.mailbox("INBOX")
        uid = await inbox.append(b"Subject: x\n\n", frozenset({"\\Answered", "K"}), 1e9)
        trash = await store.mailbox("Trash")
        pairs = await inbox.copy_to([uid, 99], trash)
        assert pairs == [(1, 1)]
        copied = trash.messages()[0]
        assert copied.flags == frozenset({"\\Answered", "K"})
        assert copied.internaldate == 1e9

    run(scenario())


def test_external_deletion_and_flag_change_are_seen(root: Path) -> None:
    maildir = mailbox_path(root, "alice")

    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        await box.append(b"Subject: 1\n\n", frozenset(), None)
        await box.append(b"Subject: 2\n\n", frozenset(), None)
        view = box.open_view(False)
        # by UID: names sort by time only when the microseconds have as
        # many digits
        first, second = (box.get(uid).filename for uid in (1, 2))  # type: ignore[union-attr]
        os.unlink(maildir / "cur" / first)
        os.rename(maildir / "cur" / second, maildir / "cur" / (second + "S"))
        await box.refresh()
        assert view.drain(True) == [("EXPUNGE", 1, 1), ("FLAGS", 1, 2)]

    run(scenario())


def test_mailbox_errors(root: Path) -> None:
    async def scenario() -> None:
        store = Mailstore(root).user("alice")
        with pytest.raises(MailstoreError) as info:
            await store.mailbox("Nope")
        assert info.value.code == "NONEXISTENT"
        await store.create("A/B")
        with pytest.raises(MailstoreError) as info:
            await store.create("A/B")
        assert info.value.code == "ALREADYEXISTS"
        with pytest.raises(MailstoreError) as info:
            await store.delete("A")
        assert info.value.code == "NONEXISTENT"  # \\Noselect: nothing to delete
        await store.rename("A/B", "C/D")
        assert await store.exists("C/D")
        await store.rename("INBOX", "Old")
        assert await store.exists("INBOX")

    run(scenario())


def test_delete_with_children_keeps_the_name_noselect(root: Path) -> None:
    # RFC 3501 6.3.4: the messages go, the name stays as \Noselect
    maildir = mailbox_path(root, "alice")

    async def scenario() -> None:
        store = Mailstore(root).user("alice")
        await store.create("A")
        await store.create("A/B")
        parent = await store.mailbox("A")
        await parent.append(b"Subject: p\n\nparent\n", frozenset(), None)
        child = await store.mailbox("A/B")
        await child.append(b"Subject: c\n\nchild\n", frozenset(), None)
        view = parent.open_view(False)

        await store.delete("A")
        assert parent.is_deleted
        assert parent.gone == "deleted"
        assert view.changed.is_set()  # an IDLE session wakes up
        listing = {f.name: f.attributes for f in await store.folders()}
        assert listing["A"] == ("\\Noselect", "\\HasChildren")
        assert listing["A/B"] == ("\\HasNoChildren",)
        assert not (maildir / ".A").exists()
        assert len((await store.mailbox("A/B")).uids) == 1
        with pytest.raises(MailstoreError) as info:
            await store.mailbox("A")
        assert info.value.code == "NONEXISTENT"
        with pytest.raises(MailstoreError) as info:
            await store.delete("A")
        assert info.value.code == "NONEXISTENT"

        # RFC 3501 2.3.1.1: created again, it gets a new UIDVALIDITY
        await store.create("A")
        again = await store.mailbox("A")
        assert again is not parent
        assert again.uids == []
        assert again.uidvalidity > parent.uidvalidity

    run(scenario())


def test_rename_marks_the_old_mailbox_gone(root: Path) -> None:
    async def scenario() -> None:
        store = Mailstore(root).user("alice")
        await store.create("A")
        await store.create("A/B")
        parent = await store.mailbox("A")
        child = await store.mailbox("A/B")
        await child.append(b"Subject: c\n\nchild\n", frozenset(), None)
        await store.rename("A", "Z")
        assert (parent.gone, child.gone) == ("renamed", "renamed")
        moved = await store.mailbox("Z/B")
        assert moved.uidvalidity == child.uidvalidity  # the index moved along
        assert len(moved.uids) == 1

    run(scenario())


def test_rename_of_a_noselect_parent_moves_its_children(root: Path) -> None:
    # RFC 3501 6.3.5: P exists only as the \Noselect parent of P/C
    async def scenario() -> None:
        store = Mailstore(root).user("alice")
        await store.create("P/C")
        assert not await store.exists("P")
        await store.rename("P", "R")
        assert await store.exists("R/C")
        assert not await store.exists("P/C")
        with pytest.raises(MailstoreError) as info:
            await store.rename("Nothing", "Else")
        assert info.value.code == "NONEXISTENT"

    run(scenario())


def test_uidvalidity_grows_within_one_second(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    maildir.mkdir()
    values = [index.new_uidvalidity(maildir / ".X") for _ in range(3)]
    values.append(index.new_uidvalidity(maildir))
    assert values == sorted(set(values))
    assert (maildir / index.UIDVALIDITY).read_text() == f"{values[-1]}\n"


def test_small_messages_read_for_headers_are_served_from_memory(root: Path) -> None:
    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        uid = await box.append(b"Subject: s\n\nsmall\n", frozenset(), None)
        big = b"Subject: b\n\n" + b"x" * mailbox_module.HEAD_BYTES
        big_uid = await box.append(big, frozenset(), None)
        small, large = box.get(uid), box.get(big_uid)
        assert small is not None
        assert large is not None
        assert box.cached_served(small) is None

        await asyncio.to_thread(box.headers, small)
        await asyncio.to_thread(box.headers, large)
        assert box.cached_served(small) == b"Subject: s\r\n\r\nsmall\r\n"
        assert box.cached_served(large) is None  # only its head was read
        assert box.served(large) == mime.to_crlf(big)
        assert box.cached_served(large) == mime.to_crlf(big)

        await box.expunge([uid])  # the key names the file: dropped with it
        assert cache.SERVED.get((box.path, small.base)) is None

    run(scenario())


@pytest.mark.parametrize(
    ("name", "dirname"),
    [
        ("Sent", ".Sent"),
        ("Projects.2026", ".Projects%2E2026"),
        ("Projects/2026", ".Projects.2026"),
        ("inbox/x", ".INBOX.x"),
        ("Entwürfe", ".Entw&APw-rfe"),
        ("100%", ".100%25"),
    ],
)
def test_folder_names_on_disk(name: str, dirname: str) -> None:
    assert names.folder_dirname(name) == dirname
    assert names.name_of_dirname(dirname) == names.normalise(name)


@pytest.mark.parametrize(
    "name", ["", "a//b", "/abs", "..", "a/../b", "x/.", "tab\there", "a" * 600]
)
def test_folder_names_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(names.InvalidName):
        names.folder_path(tmp_path, name)


def test_select_of_1000_messages_uses_the_index(root: Path) -> None:
    maildir = mailbox_path(root, "alice")
    for n in range(1000):
        deliver(maildir, b"Subject: m%d\n\nbody\n" % n)

    async def load() -> int:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        return len(box.uids)

    assert run(load()) == 1000
    uidlist = index.read_uidlist(maildir)
    assert uidlist is not None
    assert len(uidlist.sizes) == 1000


def _count_listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    listed: list[Path] = []
    real = index.list_messages

    def counting(maildir: Path) -> dict[str, index.FileEntry]:
        listed.append(maildir)
        return real(maildir)

    monkeypatch.setattr(index, "list_messages", counting)
    return listed


def test_own_flag_changes_do_not_make_the_next_refresh_list(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A STORE renames in cur/, which moves its mtime; that change is ours,
    so the next SELECT of any session keeps the index (no listing)."""
    listed = _count_listings(monkeypatch)

    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        uid = await box.append(b"Subject: 1\n\n", frozenset({"\\Seen"}), None)
        await box.refresh()
        listed.clear()
        for flag in ("\\Flagged", "\\Answered", "\\Deleted"):
            await box.store([uid], "+", frozenset({flag}), None)
            await box.refresh()
        await box.store([uid], "", frozenset({"\\Seen"}), None)
        await box.refresh()
        assert listed == []
        assert box.get(uid).flags == frozenset({"\\Seen"})  # type: ignore[union-attr]

    run(scenario())


def test_other_programs_drops_are_seen_after_our_own_changes(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = mailbox_path(root, "alice")

    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        uid = await box.append(b"Subject: 1\n\n", frozenset({"\\Seen"}), None)
        await box.store([uid], "+", frozenset({"\\Flagged"}), None)
        deliver(maildir, b"Subject: from another program\n\n")
        await box.store([uid], "+", frozenset({"\\Answered"}), None)
        await box.refresh()
        assert len(box.uids) == 2
        second = box.uids[1]
        await box.store([second], "+", frozenset({"\\Seen"}), None)  # into cur/
        await box.refresh()
        # a change by another program in cur/ before ours: not adopted
        cur = maildir / "cur"
        first = box.get(uid)
        assert first is not None
        os.rename(cur / first.filename, cur / (first.base + ":2,"))
        moved = os.stat(cur).st_mtime_ns + 1_000_000  # as on a coarse clock
        os.utime(cur, ns=(moved, moved))
        await box.store([second], "+", frozenset({"\\Flagged"}), None)
        await box.refresh()
        assert box.get(uid).flags == frozenset()  # type: ignore[union-attr]

    run(scenario())


def test_own_stamps_are_trusted_for_a_bounded_time(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = _count_listings(monkeypatch)
    monkeypatch.setattr(mailbox_module, "OWN_STAMP_TRUST_S", 0.0)

    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        uid = await box.append(b"Subject: 1\n\n", frozenset({"\\Seen"}), None)
        await box.refresh()
        listed.clear()
        await box.store([uid], "+", frozenset({"\\Flagged"}), None)
        await box.refresh()  # lists: the own stamp is older than the bound
        await box.refresh()  # listed just now: nothing moved
        assert len(listed) == 1

    run(scenario())


def test_refreshes_waiting_together_share_one_scan(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten SELECTs queued on the lock need one look at the disk that began
    after they asked, not ten; a refresh asked after it looks again."""
    maildir = mailbox_path(root, "alice")
    stamps: list[Path] = []
    real = index.dir_stamp

    def counting(path: Path) -> tuple[int, ...]:
        stamps.append(path)
        return real(path)

    monkeypatch.setattr(index, "dir_stamp", counting)

    async def scenario() -> None:
        box = await Mailstore(root).user("alice").mailbox("INBOX")
        stamps.clear()
        async with box.lock:
            waiting = [asyncio.ensure_future(box.refresh()) for _ in range(3)]
            await asyncio.sleep(0)  # a yield: each task now waits on the lock
            deliver(maildir, b"Subject: while they waited\n\n")
        await asyncio.gather(*waiting)
        assert len(stamps) == 1
        assert len(box.uids) == 1
        deliver(maildir, b"Subject: after\n\n")
        await box.refresh()
        assert len(stamps) == 2
        assert len(box.uids) == 2

    run(scenario())
