"""curl's IMAP client (imap://, STARTTLS) against a running server."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.test_imap_commands import MULTIPART, login
from tests.services.imapd_fixtures import ImapServer, imap_server

__all__ = ["imap_server"]

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "20", *args],
        capture_output=True,
        check=False,
    )


def test_curl_lists_and_fetches(imap_server: ImapServer) -> None:
    client = login(imap_server)
    client.append("INBOX", None, None, MULTIPART)
    client.logout()
    base = f"imap://127.0.0.1:{imap_server.port}"
    listing = curl("--user", "alice:alice-pass", f"{base}/")
    assert listing.returncode == 0, listing.stderr
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in listing.stdout
    fetched = curl("--user", "alice:alice-pass", f"{base}/INBOX;UID=1")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == MULTIPART


def test_curl_starttls_and_custom_request(imap_server: ImapServer) -> None:
    client = login(imap_server)
    client.append("INBOX", None, None, b"Subject: curl\r\n\r\nhi\r\n")
    client.logout()
    url = f"imap://127.0.0.1:{imap_server.port}/INBOX"
    result = curl(
        "--ssl-reqd",
        "--insecure",
        "--user",
        "alice:alice-pass",
        "--request",
        "SEARCH SUBJECT curl",
        url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"* SEARCH 1\r\n"


def test_curl_wrong_password_fails(imap_server: ImapServer) -> None:
    url = f"imap://127.0.0.1:{imap_server.port}/"
    result = curl("--user", "alice:nope", url)
    assert result.returncode == 67  # CURLE_LOGIN_DENIED
