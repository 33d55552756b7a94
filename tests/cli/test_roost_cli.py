"""The `roost` command: users, config check/show, newaliases, serve hook."""

import io
import os
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from roost.auth import UserDB
from roost.cli import main as cli
from roost.config import load


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    main_cf = tmp_path / "main.cf"
    main_cf.write_text(f"data_directory = {tmp_path / 'data'}\nsmtp_port = 2525\n")
    return main_cf


def run(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(list(argv))


def test_user_add_reads_one_line_of_stdin_and_makes_the_maildir(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(
            monkeypatch,
            "-c",
            str(conf),
            "user",
            "add",
            "Alice",
            stdin="alice pass\nignored\n",
        )
        == 0
    )
    settings = load(str(conf))
    db = UserDB(settings.users_file)
    assert db.verify("alice", "alice pass") == "alice"
    assert stat.S_IMODE(settings.users_file.stat().st_mode) == 0o600

    maildir = settings.mailbox_directory / "alice" / "Maildir"
    for folder in ("", ".Sent", ".Drafts", ".Trash", ".Junk"):
        for sub in ("cur", "new", "tmp"):
            assert (maildir / folder / sub).is_dir()
    assert "added user alice" in capsys.readouterr().out


def test_user_add_virtual_user_mailbox(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        run(
            monkeypatch, "-c", str(conf), "user", "add", "bo@Example.test", stdin="pw\n"
        )
        == 0
    )
    settings = load(str(conf))
    assert settings.users_file.read_text().startswith("bo@example.test:{ARGON2ID}")
    assert (settings.mailbox_directory / "example.test" / "bo" / "Maildir").is_dir()


def test_user_add_sha512_crypt_scheme(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        run(
            monkeypatch,
            "-c",
            str(conf),
            "user",
            "add",
            "--scheme",
            "sha512-crypt",
            "carl",
            stdin="pw\n",
        )
        == 0
    )
    line = load(str(conf)).users_file.read_text()
    assert line.startswith("carl:{SHA512-CRYPT}$6$")


def test_user_add_prompts_twice_on_a_terminal(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["secret", "secret", "one", "two"])
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", tty)
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: next(answers))

    assert cli.main(["-c", str(conf), "user", "add", "dee"]) == 0
    assert cli.main(["-c", str(conf), "user", "add", "eve"]) == 1
    assert "passwords do not match" in capsys.readouterr().err
    db = UserDB(load(str(conf)).users_file)
    assert db.list() == ["dee"]
    assert db.verify("dee", "secret") == "dee"


@pytest.mark.parametrize(
    ("name", "stdin", "message"),
    [
        ("../evil", "pw\n", "invalid user name"),
        ("a/b", "pw\n", "invalid user name"),
        ("ok", "", "no password on standard input"),
        ("ok", "\n", "empty password"),
    ],
)
def test_user_add_refusals(
    conf: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    stdin: str,
    message: str,
) -> None:
    assert run(monkeypatch, "-c", str(conf), "user", "add", name, stdin=stdin) == 1
    err = capsys.readouterr().err
    assert err.startswith("roost: error: ")
    assert message in err
    assert not (conf.parent / "data" / "mail").exists()


def test_user_passwd_del_list(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["-c", str(conf)]
    assert run(monkeypatch, *c, "user", "add", "amy", stdin="one\n") == 0
    assert run(monkeypatch, *c, "user", "add", "bob", stdin="b\n") == 0
    assert run(monkeypatch, *c, "user", "add", "amy", stdin="x\n") == 1
    assert "already exists" in capsys.readouterr().err

    assert run(monkeypatch, *c, "user", "passwd", "AMY", stdin="two\n") == 0
    db = UserDB(load(str(conf)).users_file)
    assert db.verify("amy", "two") == "amy"
    assert db.verify("amy", "one") is None

    capsys.readouterr()
    assert run(monkeypatch, *c, "user", "list") == 0
    assert capsys.readouterr().out == "amy\nbob\n"

    assert run(monkeypatch, *c, "user", "del", "amy") == 0
    assert run(monkeypatch, *c, "user", "del", "amy") == 1
    assert "no such user amy" in capsys.readouterr().err
    assert run(monkeypatch, *c, "user", "passwd", "zed", stdin="x\n") == 1
    assert db.list() == ["bob"]
    # mail stays on disk after del
    assert (load(str(conf)).mailbox_directory / "amy" / "Maildir").is_dir()


def test_config_from_environment(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROOST_CONFIG", str(conf.parent))
    assert run(monkeypatch, "config", "show", "-n") == 0
    assert "smtp_port = 2525" in capsys.readouterr().out


def test_config_check_ok_and_warnings(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf.write_text(conf.read_text() + "smtpd_banner_x = hi\n")
    assert run(monkeypatch, "-c", str(conf), "config", "check") == 0
    err = capsys.readouterr().err
    assert f"roost: warning: {conf}:3: unknown parameter smtpd_banner_x" in err


def test_config_check_errors_with_file_and_line(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf.write_text(conf.read_text() + "imap_port = lots\nmynetworks = 10.0.0.1/8\n")
    assert run(monkeypatch, "-c", str(conf), "config", "check") == 1
    err = capsys.readouterr().err.splitlines()
    assert f"roost: error: {conf}:3: imap_port: bad port 'lots'" in err[0]
    assert any(f"{conf}:4:" in line for line in err)


def test_config_check_reports_warnings_with_errors_in_line_order(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # postfix-like: every problem of the file at once, each with file:line
    conf.write_text(
        conf.read_text() + "smtpd_banner_x = hi\nimap_port = lots\nmy_typo = 1\n"
    )
    assert run(monkeypatch, "-c", str(conf), "config", "check") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"roost: warning: {conf}:3: unknown parameter smtpd_banner_x",
        f"roost: error: {conf}:4: imap_port: bad port 'lots' (use 0-65535 or none)",
        f"roost: warning: {conf}:5: unknown parameter my_typo",
    ]
    assert run(monkeypatch, "-c", str(conf), "user", "list") == 1
    err = capsys.readouterr().err
    assert f"roost: warning: {conf}:3: unknown parameter smtpd_banner_x" in err
    assert "configuration has errors" in err


def test_config_check_warns_of_readable_users_file(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = conf.parent / "data" / "users"
    users.parent.mkdir()
    users.write_text("")
    users.chmod(0o644)
    assert run(monkeypatch, "-c", str(conf), "config", "check") == 0
    assert "readable by others (mode 0644)" in capsys.readouterr().err


def test_commands_refuse_to_run_on_config_errors(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf.write_text("smtp_port = x\n")
    assert run(monkeypatch, "-c", str(conf), "user", "list") == 1
    assert "configuration has errors" in capsys.readouterr().err


def test_config_show_like_postconf(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "-c", str(conf), "config", "show", "-n") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"data_directory = {conf.parent / 'data'}",
        "smtp_port = 2525",
    ]
    assert run(monkeypatch, "-c", str(conf), "config", "show") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "myorigin = $myhostname" in lines
    assert lines == sorted(lines)

    assert run(monkeypatch, "config", "show", "mail_name", "nope", "-c", str(conf)) == 0
    out = capsys.readouterr()
    assert out.out == "mail_name = Roost\n"
    assert "nope: unknown parameter" in out.err


def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch) == 2
    assert run(monkeypatch, "user") == 2
    assert run(monkeypatch, "user", "add") == 2
    assert run(monkeypatch, "frobnicate") == 2
    assert run(monkeypatch, "user", "add", "--scheme", "md5", "x") == 2
    assert "usage:" in capsys.readouterr().err
    assert run(monkeypatch, "--help") == 0


def test_serve_hands_settings_to_the_server(
    conf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    fake = types.ModuleType("roost.server")

    def serve(settings: object) -> int:
        seen.append(settings)
        return 7

    fake.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "roost.server", fake)
    assert run(monkeypatch, "-c", str(conf), "serve") == 7
    assert seen[0].smtp_port == 2525


def test_newaliases_reports_alias_file_errors(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    aliases = conf.parent / "aliases"
    conf.write_text(conf.read_text() + f"alias_maps = hash:{aliases}\n")
    aliases.write_text("postmaster: root\n")
    assert run(monkeypatch, "-c", str(conf), "newaliases") == 0
    aliases.write_text("this line has no colon\n")
    assert run(monkeypatch, "-c", str(conf), "newaliases") == 1
    assert f"roost: error: {aliases}:1" in capsys.readouterr().err


def test_real_command_in_a_subprocess(conf: Path) -> None:
    env = {**os.environ, "ROOST_CONFIG": str(conf)}
    cmd = [sys.executable, "-m", "roost.cli.main"]
    added = subprocess.run(
        [*cmd, "user", "add", "zoe"],
        input="zoe-pass\n",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    listed = subprocess.run(
        [*cmd, "user", "list"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.stdout == "zoe\n"
    bad = subprocess.run(
        [*cmd, "-c", str(conf.parent / "missing.cf"), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "missing.cf: no such file" in bad.stderr


def test_config_describe(
    conf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, "-c", str(conf), "config", "describe", "--markdown") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| name | default | meaning |"
    assert any(line.startswith("| `smtp_port` | `25` |") for line in out)
