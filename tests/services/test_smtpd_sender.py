"""smtpd at MAIL FROM: sender ownership for logged-in clients (issue 3),
smtpd_sender_restrictions, and what is logged for refused senders."""

from __future__ import annotations

import logging
import smtplib
from pathlib import Path

import pytest

from .smtpd_fixtures import open_raw, start_server


def refused_mail(
    tmp_path: Path, sender: str, login: str = "alice", **values: str
) -> tuple[int, bytes]:
    srv = start_server(tmp_path, submission=True, **values)
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            client.login(login, f"{login}-pass")
            code, text = client.mail(sender)
            if code == 250:
                assert client.rcpt("friend@elsewhere.example")[0] == 250
            client.rset()
            # her own address is fine on the same connection
            assert client.mail("alice+lists@example.test")[0] == 250
    finally:
        srv.stop()
    return code, text


def test_login_must_own_the_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost.smtpd")
    code, text = refused_mail(tmp_path, "bob@example.test")
    assert code == 553
    # postfix's wording, then the connection id for the log
    assert text.startswith(
        b"5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice ("
    )
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("NOQUEUE: reject: MAIL from localhost[127.0.0.1]: 553 5.7.1 ")
        and line.endswith("; from=<bob@example.test> proto=ESMTP helo=<c.example.org>")
        for line in lines
    )
    # nothing was opened for the refused transaction
    assert not any(": client=" in line for line in lines)


def test_null_sender_is_allowed_to_logged_in_clients(tmp_path: Path) -> None:
    code, _ = refused_mail(tmp_path, "")
    assert code == 250


def test_sender_login_check_can_be_relaxed(tmp_path: Path) -> None:
    code, _ = refused_mail(tmp_path, "bob@example.test", smtpd_sender_login_check="no")
    assert code == 250


def test_sender_login_maps_table(tmp_path: Path) -> None:
    table = tmp_path / "sender_logins"
    table.write_text("bob@example.test alice, bob\nalice@example.test alice\n")
    spec = f"texthash:{table}"
    code, _ = refused_mail(tmp_path, "bob@example.test", smtpd_sender_login_maps=spec)
    assert code == 250
    # the table has no alice+lists@ key but the address without extension
    code, _ = refused_mail(tmp_path, "carol@example.test", smtpd_sender_login_maps=spec)
    assert code == 553


def test_sender_restrictions_run_at_mail_from(tmp_path: Path) -> None:
    table = tmp_path / "sender_access"
    table.write_text("spammer@elsewhere.example REJECT go away\n")
    srv = start_server(
        tmp_path, smtpd_sender_restrictions=f"check_sender_access texthash:{table}"
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            code, text = client.mail("spammer@elsewhere.example")
            assert (code, text[:15]) == (554, b"5.7.1 go away (")
            # a refused MAIL leaves no transaction behind
            assert client.rcpt("alice@example.test")[0] == 503
            assert client.mail("friend@elsewhere.example")[0] == 250
            assert client.rcpt("alice@example.test")[0] == 250
    finally:
        srv.stop()


@pytest.mark.parametrize(("strict", "code"), [("no", 250), ("yes", 501)])
def test_strict_rfc821_envelopes_setting(
    tmp_path: Path, strict: str, code: int
) -> None:
    srv = start_server(tmp_path, strict_rfc821_envelopes=strict)
    try:
        raw = open_raw(srv)
        assert raw.command(b"EHLO c.example.org") == 250
        assert raw.command(b"MAIL FROM:sender@example.org") == code
        assert raw.command(b"MAIL FROM:<sender@example.org>") == (
            503 if code == 250 else 250
        )
    finally:
        srv.stop()
