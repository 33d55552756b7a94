import os

import pytest

from roost.delivery.aliases import AliasError, AliasTable, parse, rebuild, split_values
from tests.delivery.local_fixtures import make_settings


def test_parse_aliases_format():
    parsed = parse(
        "# comment\n"
        "Postmaster: root\n"
        "team: alice, bob,\n"
        "  carol@example.org\n"
        'cmd: "|/usr/bin/filter -x, y"\n'
        "log: /var/log/mail.copy\n"
        "list: :include:/etc/mail/list\n"
    )
    assert parsed.errors == []
    assert parsed.entries == {
        "postmaster": ["root"],
        "team": ["alice", "bob", "carol@example.org"],
        "cmd": ["|/usr/bin/filter -x, y"],
        "log": ["/var/log/mail.copy"],
        "list": [":include:/etc/mail/list"],
    }


def test_parse_reports_bad_lines_with_file_and_line():
    parsed = parse("good: alice\nno colon here\nempty:\n", "aliases")
    assert parsed.entries == {"good": ["alice"]}
    assert parsed.errors == [
        "aliases:2: expected 'name: value'",
        "aliases:3: empty: no value",
    ]


def test_split_values_respects_quotes():
    assert split_values(' a , "b, c" ,d') == ["a", "b, c", "d"]


def test_table_reloads_when_file_changes(tmp_path):
    path = tmp_path / "aliases"
    path.write_text("one: alice\n")
    table = AliasTable([path])
    assert table.lookup("ONE") == ["alice"]
    path.write_text("one: bob\ntwo: alice\n")
    os.utime(path, ns=(1, 1))
    table.refresh(force=True)
    assert table.lookup("one") == ["bob"]
    assert table.lookup("two") == ["alice"]


def test_missing_file_is_empty(tmp_path):
    assert AliasTable([tmp_path / "nope"]).lookup("x") is None


def test_rebuild_checks_files(tmp_path):
    settings = make_settings(tmp_path)
    (tmp_path / "aliases").write_text("ok: alice\n")
    assert rebuild(settings) == []
    (tmp_path / "aliases").write_text("ok alice\n")
    with pytest.raises(AliasError) as info:
        rebuild(settings)
    assert "aliases:1:" in info.value.errors[0]
