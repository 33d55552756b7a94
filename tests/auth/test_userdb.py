"""UserDB: the passwd-file, atomic writes, reload on change, verify."""

import asyncio
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from roost.auth import (
    BadPassword,
    InvalidUserName,
    UnknownUser,
    UserDB,
    UserExists,
    normalize_name,
)
from roost.auth.schemes import hash_password


@pytest.fixture
def db(tmp_path: Path) -> UserDB:
    return UserDB(tmp_path / "etc" / "users")


def test_missing_file_is_empty(db: UserDB) -> None:
    assert db.list() == []
    assert not db.exists("alice")
    assert db.verify("alice", "pw") is None


def test_add_writes_dovecot_passwd_line_with_mode_0600(db: UserDB) -> None:
    assert db.add("Alice", "alice-pass") == "alice"
    text = db.path.read_text()
    name, password, *rest = text.rstrip("\n").split(":")
    assert name == "alice"
    assert password.startswith("{ARGON2ID}$argon2id$")
    assert rest == [""] * 6
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600
    assert db.exists("ALICE")
    assert db.list() == ["alice"]


def test_verify_returns_canonical_name(db: UserDB) -> None:
    db.add("alice@example.test", "alice-pass", scheme="SHA512-CRYPT")
    assert db.verify("Alice@Example.TEST", "alice-pass") == "alice@example.test"
    assert db.verify("alice@example.test", "wrong") is None
    assert db.verify("alice@example.test", "") is None
    assert db.verify("bob@example.test", "alice-pass") is None


def test_averify_runs_in_a_thread(db: UserDB) -> None:
    db.add("alice", "alice-pass")
    assert asyncio.run(db.averify("alice", "alice-pass")) == "alice"
    assert asyncio.run(db.averify("alice", "nope")) is None


def test_duplicate_add_is_refused(db: UserDB) -> None:
    db.add("alice", "a")
    with pytest.raises(UserExists):
        db.add("ALICE", "b")


def test_set_password_and_delete(db: UserDB) -> None:
    db.add("alice", "old-pass")
    db.add("bob", "bob-pass")
    assert db.verify("alice", "old-pass") == "alice"
    db.set_password("alice", "new-pass")
    assert db.verify("alice", "old-pass") is None
    assert db.verify("alice", "new-pass") == "alice"
    db.delete("alice")
    assert db.list() == ["bob"]
    assert db.verify("alice", "new-pass") is None
    with pytest.raises(UnknownUser):
        db.delete("alice")
    with pytest.raises(UnknownUser):
        db.set_password("carol", "x")


def test_other_lines_and_fields_are_kept(db: UserDB) -> None:
    db.path.parent.mkdir(parents=True)
    db.path.write_text(
        "# users\n"
        "carol:{PLAIN}carol-pass:1000:1000::/home/carol::userdb_quota=1G\n"
        "\n"
        "dave:{PLAIN}dave-pass:::::\n"
    )
    db.set_password("carol", "new")
    db.add("erin", "erin-pass")
    lines = db.path.read_text().splitlines()
    assert lines[0] == "# users"
    assert lines[1].startswith("carol:{ARGON2ID}")
    assert lines[1].endswith(":1000:1000::/home/carol::userdb_quota=1G")
    assert lines[3] == "dave:{PLAIN}dave-pass:::::"
    assert db.verify("dave", "dave-pass") == "dave"
    assert db.list() == ["carol", "dave", "erin"]


def test_first_entry_wins_and_bad_lines_are_skipped(db: UserDB) -> None:
    db.path.parent.mkdir(parents=True)
    db.path.write_text(
        "amy:{PLAIN}one\nAMY:{PLAIN}two\n../evil:{PLAIN}x\nnocolon\nkim:{MD5}deadbeef\n"
    )
    assert db.verify("amy", "one") == "amy"
    assert db.verify("amy", "two") is None
    assert db.list() == ["amy", "kim"]
    assert db.verify("kim", "x") is None  # unknown scheme: logged, refused


def test_reload_when_another_process_changes_the_file(db: UserDB) -> None:
    db.add("alice", "a-pass")
    assert not db.exists("bob")
    script = (
        "import sys; from pathlib import Path; from roost.auth import UserDB; "
        "UserDB(Path(sys.argv[1])).add('bob', 'b-pass')"
    )
    subprocess.run([sys.executable, "-c", script, str(db.path)], check=True)
    assert db.exists("bob")
    assert db.verify("bob", "b-pass") == "bob"


def test_password_change_invalidates_cached_login(db: UserDB) -> None:
    db.add("alice", "first")
    assert db.verify("alice", "first") == "alice"
    assert db.verify("alice", "first") == "alice"  # from the cache
    other = UserDB(db.path)
    other.set_password("alice", "second")
    assert db.verify("alice", "first") is None
    assert db.verify("alice", "second") == "alice"


def test_cached_login_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    db = UserDB(tmp_path / "users", clock=lambda: now[0])
    db.add("alice", "pw")
    assert db.verify("alice", "pw") == "alice"
    calls = []
    import roost.auth.userdb as userdb_module

    real = userdb_module.schemes.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(userdb_module.schemes, "verify_password", counting)
    assert db.verify("alice", "pw") == "alice"
    assert calls == []
    now[0] += db.cache_ttl_s + 1
    assert db.verify("alice", "pw") == "alice"
    assert len(calls) == 1


def test_unknown_user_costs_a_hash(db: UserDB, monkeypatch: pytest.MonkeyPatch) -> None:
    import roost.auth.userdb as userdb_module

    calls = []
    real = userdb_module.schemes.verify_password

    def counting(stored: str, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(userdb_module.schemes, "verify_password", counting)
    assert db.verify("nobody", "pw") is None
    assert db.verify("../x", "pw") is None
    assert len(calls) == 2


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",
        "a:b",
        "..",
        "a..b",
        ".hidden",
        "-opt",
        "a b",
        "a\tb",
        "a\0b",
        "a\nb",
        "a@b@c",
        "a@",
        "@b",
        "a@.b",
        "a@b/../c",
        "x" * 256,
    ],
)
def test_bad_names_are_refused(db: UserDB, name: str) -> None:
    with pytest.raises(InvalidUserName):
        normalize_name(name)
    with pytest.raises(InvalidUserName):
        db.add(name, "pw")
    assert not db.exists(name)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("Alice", "alice"),
        ("alice@Example.TEST", "alice@example.test"),
        ("j.doe-2_x", "j.doe-2_x"),
        ("jürgen", "jürgen"),
    ],
)
def test_good_names(name: str, canonical: str) -> None:
    assert normalize_name(name) == canonical


@pytest.mark.parametrize("password", ["", "a\nb", "a\rb", "a\0b", "x" * 257])
def test_bad_passwords_are_refused(db: UserDB, password: str) -> None:
    with pytest.raises(BadPassword):
        db.add("alice", password)
    assert not db.path.exists()


def test_write_is_atomic_no_temp_files_left(db: UserDB) -> None:
    for n in range(5):
        db.add(f"user{n}", "pw")
    assert sorted(p.name for p in db.path.parent.iterdir()) == ["users", "users.lock"]


def test_existing_file_mode_is_tightened(db: UserDB) -> None:
    db.path.parent.mkdir(parents=True)
    db.path.write_text(f"amy:{hash_password('x')}::::::\n")
    db.path.chmod(0o644)
    db.add("bob", "pw")
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600
