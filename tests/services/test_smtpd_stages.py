"""smtpd_client_restrictions, smtpd_helo_restrictions (applied at RCPT, as
postfix's default smtpd_delay_reject = yes) and smtpd_data_restrictions
(applied at DATA)."""

from __future__ import annotations

import smtplib
from pathlib import Path

from .smtpd_fixtures import start_server


def test_client_restrictions_reject_at_rcpt(tmp_path: Path) -> None:
    table = tmp_path / "client_access"
    table.write_text("127.0.0.1 REJECT no mail from here\n")
    srv = start_server(
        tmp_path, smtpd_client_restrictions=f"check_client_access texthash:{table}"
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            # delayed: MAIL is accepted, the reject comes at RCPT
            assert client.mail("friend@elsewhere.example")[0] == 250
            code, text = client.rcpt("alice@example.test")
            assert code == 554
            assert b"no mail from here" in text
    finally:
        srv.stop()


def test_helo_restrictions_reject_at_rcpt_and_permit_ends_only_its_list(
    tmp_path: Path,
) -> None:
    table = tmp_path / "helo_access"
    table.write_text("bad.example REJECT bad helo\ngood.example OK\n")
    srv = start_server(
        tmp_path,
        smtpd_helo_restrictions=f"check_helo_access texthash:{table}",
        mynetworks="192.0.2.0/24",
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("bad.example")
            assert client.mail("friend@elsewhere.example")[0] == 250
            code, text = client.rcpt("alice@example.test")
            assert (code, b"bad helo" in text) == (554, True)
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("good.example")
            assert client.mail("friend@elsewhere.example")[0] == 250
            assert client.rcpt("alice@example.test")[0] == 250
            # OK in the HELO list does not open relaying: the relay
            # restrictions still run after it
            assert client.rcpt("someone@elsewhere.example")[0] in (454, 554)
    finally:
        srv.stop()


def test_data_restrictions_reject_at_data(tmp_path: Path) -> None:
    table = tmp_path / "sender_access"
    table.write_text("friend@elsewhere.example REJECT no data from you\n")
    srv = start_server(
        tmp_path,
        smtpd_data_restrictions=f"check_sender_access texthash:{table}",
    )
    try:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.ehlo("c.example.org")
            assert client.mail("friend@elsewhere.example")[0] == 250
            assert client.rcpt("alice@example.test")[0] == 250
            code, text = client.docmd("DATA")
            assert code == 554
            assert b"no data from you" in text
            # the session goes on: another sender may send
            client.rset()
            assert client.mail("other@elsewhere.example")[0] == 250
            assert client.rcpt("alice@example.test")[0] == 250
            assert client.docmd("DATA")[0] == 354
            client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
            assert client.getreply()[0] == 250
    finally:
        srv.stop()
