"""The POP3 maildrop view of a Maildir: snapshot, lock, sizes, commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.mailstore import maildir as md
from roost.mailstore import pop3drop
from roost.mailstore.pop3drop import (
    LOCK_FILE_NAME,
    SIZES_FILE_NAME,
    Maildrop,
    MaildropInUse,
    MessageDeleted,
    MessageGone,
    NoSuchMessage,
    TopFilter,
    uidl_for,
)
from roost.protocols.pop3 import served_size


def drop_files(maildir: Path, count: int) -> list[Path]:
    md.ensure(maildir)
    return [
        md.deliver(maildir, b"Subject: %d\n\nbody %d\n" % (i, i)) for i in range(count)
    ]


def names_on_disk(maildir: Path) -> set[str]:
    return {
        md.parse_name(name)[0]
        for sub in ("new", "cur")
        for name in os.listdir(maildir / sub)
    }


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "alice" / "Maildir"


def test_open_creates_a_missing_maildir(maildir: Path) -> None:
    drop = Maildrop.open(maildir)
    try:
        assert drop.stat() == (0, 0)
        assert (maildir / "new").is_dir()
    finally:
        drop.release()


def test_snapshot_in_delivery_order_with_base_name_uidls(maildir: Path) -> None:
    paths = drop_files(maildir, 5)
    # One of them already seen by IMAP: in cur/ with flags.
    seen = maildir / "cur" / md.name_with_flags(paths[2].name, "S")
    os.rename(paths[2], seen)
    drop = Maildrop.open(maildir)
    try:
        assert [m.uidl for _, m in drop.live()] == [p.name for p in paths]
        assert drop.messages[2].subdir == "cur"
    finally:
        drop.release()


def test_other_names_sort_by_mtime(maildir: Path) -> None:
    md.ensure(maildir)
    for name, mtime in (("zzz-first", 1000), ("aaa-second", 2000)):
        path = maildir / "new" / name
        path.write_bytes(b"x\n")
        os.utime(path, (mtime, mtime))
    drop = Maildrop.open(maildir)
    try:
        assert [m.uidl for m in drop.messages] == ["zzz-first", "aaa-second"]
    finally:
        drop.release()


def test_sizes_are_crlf_sizes(maildir: Path) -> None:
    # Case 026: LF on disk, CRLF on the wire, final CRLF added.
    md.ensure(maildir)
    bodies = [
        b"Subject: lf\n\nline 1\nline 2\n",
        b"Subject: mixed\r\n\tfolded\n\r\nbody\r\n",
        b"Subject: none\r\n\r\nlast line",
    ]
    for body in bodies:
        md.deliver(maildir, body)
    drop = Maildrop.open(maildir)
    try:
        sizes = [drop.size_of(m) for m in drop.messages]
        assert sizes == [served_size(b) for b in bodies]
        assert sizes == [31, 33, 28]
        assert drop.stat() == (3, sum(sizes))
    finally:
        drop.release()


def test_second_open_is_in_use_until_release(maildir: Path) -> None:
    # RFC 1939 §4, RFC 2449 §8.1.2: one session per maildrop.
    first = Maildrop.open(maildir)
    with pytest.raises(MaildropInUse):
        Maildrop.open(maildir)
    first.release()
    first.release()
    Maildrop.open(maildir).release()


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from roost.mailstore.pop3drop import Maildrop
    drop = Maildrop.open(Path(sys.argv[1]))
    print("locked", flush=True)
    sys.stdin.read()
    """,
)


def test_lock_holds_across_processes_and_dies_with_its_holder(
    maildir: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(maildir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(MaildropInUse):
            Maildrop.open(maildir)
        # A crash (kill -9) must not lock the user out.
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (maildir / LOCK_FILE_NAME).exists()
    Maildrop.open(maildir).release()


def test_dele_marks_rset_unmarks(maildir: Path) -> None:
    drop_files(maildir, 3)
    drop = Maildrop.open(maildir)
    try:
        drop.delete(1)
        with pytest.raises(MessageDeleted):
            drop.get(1)
        with pytest.raises(MessageDeleted):
            drop.delete(1)
        with pytest.raises(NoSuchMessage):
            drop.get(4)
        with pytest.raises(NoSuchMessage):
            drop.get(0)
        assert drop.stat()[0] == 2
        assert [n for n, _ in drop.live()] == [2, 3]
        drop.reset()
        assert drop.stat()[0] == 3
    finally:
        drop.release()


def test_commit_removes_marked_and_files_retrieved_as_seen(maildir: Path) -> None:
    paths = drop_files(maildir, 3)
    drop = Maildrop.open(maildir)
    drop.delete(2)
    drop.mark_retrieved(drop.get(3))
    result = drop.commit()
    drop.release()
    assert (result.deleted, result.failed) == (1, 0)
    assert names_on_disk(maildir) == {paths[0].name, paths[2].name}
    # Retrieved: moved to cur/ with \Seen, base name kept; others stay.
    assert os.listdir(maildir / "cur") == [paths[2].name + ":2,S"]
    assert os.listdir(maildir / "new") == [paths[0].name]


def test_commit_syncs_directories_only_after_a_change(
    maildir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop_files(maildir, 2)
    synced: list[Path] = []
    monkeypatch.setattr(md, "fsync_dir", synced.append)
    for expect in (2, 0):
        # first: both filed as seen (renamed); then: already seen
        drop = Maildrop.open(maildir)
        try:
            for message in drop.messages:
                drop.mark_retrieved(message)
            drop.commit()
        finally:
            drop.release()
        assert len(synced) == expect
        synced.clear()
    drop = Maildrop.open(maildir)
    try:
        drop.delete(1)
        assert drop.commit().deleted == 1
    finally:
        drop.release()
    assert synced == [maildir.resolve() / "new", maildir.resolve() / "cur"]


def test_release_without_commit_changes_nothing(maildir: Path) -> None:
    # RFC 1939 §6: no QUIT, no UPDATE state, nothing removed.
    drop_files(maildir, 2)
    before = sorted(os.listdir(maildir / "new"))
    drop = Maildrop.open(maildir)
    drop.delete(1)
    drop.mark_retrieved(drop.get(2))
    drop.release()
    assert sorted(os.listdir(maildir / "new")) == before


def test_mail_delivered_during_session_is_not_in_snapshot(maildir: Path) -> None:
    drop_files(maildir, 2)
    drop = Maildrop.open(maildir)
    try:
        md.deliver(maildir, b"Subject: late\n\nx\n")
        assert drop.stat()[0] == 2
        drop.delete(1)
        drop.commit()
    finally:
        drop.release()
    drop = Maildrop.open(maildir)
    try:
        assert drop.stat()[0] == 2
    finally:
        drop.release()


def test_renamed_message_is_found_again(maildir: Path) -> None:
    # An IMAP session may move new/ -> cur/ or change flags meanwhile.
    (path,) = drop_files(maildir, 1)
    drop = Maildrop.open(maildir)
    try:
        os.rename(path, maildir / "cur" / (path.name + ":2,S"))
        with drop.open_message(drop.get(1)) as f:
            assert f.read().startswith(b"Subject: 0")
        drop.delete(1)
        assert drop.commit().deleted == 1
        assert names_on_disk(maildir) == set()
    finally:
        drop.release()


def test_expunged_message_is_gone_and_commit_still_succeeds(maildir: Path) -> None:
    paths = drop_files(maildir, 2)
    drop = Maildrop.open(maildir)
    try:
        paths[0].unlink()
        with pytest.raises(MessageGone):
            drop.open_message(drop.get(1))
        drop.delete(1)
        assert drop.commit().failed == 0
    finally:
        drop.release()


def test_read_ahead_stops_at_the_budget_and_at_a_missing_file(maildir: Path) -> None:
    md.ensure(maildir)
    bodies = [b"Subject: %d\n\n" % n + b"x\n" * (10 * n) for n in range(6)]
    paths = [md.deliver(maildir, body) for body in bodies]
    drop = Maildrop.open(maildir)
    try:
        paths[4].unlink()  # expunged by another program since login
        numbered = list(enumerate(drop.messages, 1))
        budget = len(bodies[0]) + len(bodies[1])
        found = drop.read_ahead(numbered, budget)
        assert [(n, data) for n, _, data in found] == [(1, bodies[0]), (2, bodies[1])]
        assert [size for _, size, _ in found] == [served_size(b) for b in bodies[:2]]
        # sizes learned on the way need no second read
        assert drop.messages[1].size == served_size(bodies[1])
        # one byte short: message 1 alone does not fit, nothing is read
        assert drop.read_ahead(numbered, len(bodies[0]) - 1) == []
        found = drop.read_ahead(numbered[2:], 1 << 20)
        assert [n for n, _, _ in found] == [3, 4]  # 5 is gone: stop there
    finally:
        drop.release()


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """No sizes cached in this process, as after a restart."""
    monkeypatch.setattr(pop3drop, "_size_cache", type(pop3drop._size_cache)())


def _no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Maildrop, message: object) -> bytes:
        raise AssertionError("message file read for its size")

    monkeypatch.setattr(Maildrop, "_read_all", refuse)


def test_sizes_survive_a_restart_in_the_sizes_file(
    maildir: Path,
    new_process: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies = [b"Subject: %d\n\nline\n" % n + b"x" * n for n in range(5)]
    md.ensure(maildir)
    for body in bodies:
        md.deliver(maildir, body)
    drop = Maildrop.open(maildir)
    expected = (5, sum(served_size(b) for b in bodies))
    try:
        assert drop.stat() == expected
    finally:
        drop.release()
    assert (maildir / SIZES_FILE_NAME).read_bytes().startswith(b"roost-pop3-sizes")
    monkeypatch.setattr(pop3drop, "_size_cache", type(pop3drop._size_cache)())
    _no_reading(monkeypatch)
    drop = Maildrop.open(maildir)
    try:
        assert drop.stat() == expected
        drop.delete(2)
        drop.commit()
    finally:
        drop.release()
    # the removed message's entry went with it
    lines = (maildir / SIZES_FILE_NAME).read_bytes().splitlines()
    assert len(lines) == 1 + 4
    assert md.deliver(maildir, b"new\n")  # not in the file: read for its size
    monkeypatch.undo()
    drop = Maildrop.open(maildir)
    try:
        assert drop.stat() == (5, expected[1] - served_size(bodies[1]) + 5)
    finally:
        drop.release()


@pytest.mark.parametrize(
    "contents",
    [
        b"",
        b"not our file\n1 x\n",
        b"roost-pop3-sizes 1\n5 BASE",  # torn: no LF after the entry
        b"roost-pop3-sizes 1\n3 BASE\n",  # below the ,S= of its name
        b"roost-pop3-sizes 1\nx BASE\n" + b"9" * 40 + b" BASE\n",
    ],
)
def test_a_bad_sizes_file_is_not_believed(
    maildir: Path,
    new_process: None,
    contents: bytes,
) -> None:
    md.ensure(maildir)
    body = b"Subject: s\n\nbody\n"
    path = md.deliver(maildir, body)
    (maildir / SIZES_FILE_NAME).write_bytes(
        contents.replace(b"BASE", path.name.encode())
    )
    drop = Maildrop.open(maildir)
    try:
        assert drop.stat() == (1, served_size(body))
    finally:
        drop.release()
    # and it was replaced by a good one
    line = f"{served_size(body)} {path.name}\n".encode()
    assert (maildir / SIZES_FILE_NAME).read_bytes() == b"roost-pop3-sizes 1\n" + line


def test_reading_a_message_corrects_a_wrong_cached_size(
    maildir: Path,
    new_process: None,
) -> None:
    md.ensure(maildir)
    body = b"Subject: s\n\nbody\n"
    path = md.deliver(maildir, body)
    wrong = b"roost-pop3-sizes 1\n%d %s\n" % (len(body) + 50, path.name.encode())
    (maildir / SIZES_FILE_NAME).write_bytes(wrong)
    drop = Maildrop.open(maildir)
    try:
        message = drop.get(1)
        assert drop.size_of(message) == len(body) + 50
        data, rest = drop.start_read(message)
        assert rest is None
        assert drop.learn_size(message, data) == served_size(body)
        assert drop.stat() == (1, served_size(body))
    finally:
        drop.release()


def test_uidl_is_stable_and_printable() -> None:
    assert uidl_for("1733.M1P2Q3.host,S=10") == "1733.M1P2Q3.host,S=10"
    odd = ["name with space", "x" * 71, "caf\u00e9", "tab\there", "\udcff"]
    uidls = [uidl_for(name) for name in odd]
    assert uidls == [uidl_for(name) for name in odd]
    assert len(set(uidls)) == len(odd)
    for uidl in uidls:
        assert 1 <= len(uidl) <= 70
        assert all(0x21 <= ord(c) <= 0x7E for c in uidl)


def run_top(data: bytes, lines: int, chunk: int) -> bytes:
    cutter = TopFilter(lines)
    out = b""
    for i in range(0, len(data), chunk):
        out += cutter.feed(data[i : i + chunk])
        if cutter.is_done:
            break
    return out


@pytest.mark.parametrize("chunk", [1, 2, 5, 1000])
def test_top_filter(chunk: int) -> None:
    msg = b"A: 1\r\nB: 2\n\r\nl1\nl2\r\nl3\n"
    assert run_top(msg, 0, chunk) == b"A: 1\r\nB: 2\n\r\n"
    assert run_top(msg, 2, chunk) == b"A: 1\r\nB: 2\n\r\nl1\nl2\r\n"
    assert run_top(msg, 99, chunk) == msg
    assert run_top(b"A: 1\nB: 2", 0, chunk) == b"A: 1\nB: 2"
    assert run_top(b"\nbody\n", 0, chunk) == b"\n"
    assert run_top(b"A: \r\rx\n\nb\n", 0, chunk) == b"A: \r\rx\n\n"


@given(st.binary(max_size=60), st.integers(0, 5), st.integers(1, 9))
def test_top_filter_ignores_chunking(data: bytes, lines: int, chunk: int) -> None:
    whole = run_top(data, lines, len(data) or 1)
    assert run_top(data, lines, chunk) == whole
    assert data.startswith(whole)
