"""SASL PLAIN (RFC 4616) and LOGIN exchanges, and case 015's probes."""

import asyncio
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.auth import UserDB, sasl
from roost.auth.sasl import Credentials, Exchange, Failure, SaslError


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


@pytest.fixture(scope="module")
def userdb(tmp_path_factory: pytest.TempPathFactory) -> UserDB:
    db = UserDB(tmp_path_factory.mktemp("auth") / "users")
    db.add("alice@example.test", "alice-pass", scheme="SHA512-CRYPT")
    db.add("bob@example.test", "bob-pass", scheme="SHA512-CRYPT")
    return db


def login(userdb: UserDB, response: bytes) -> str | None:
    exchange = Exchange("PLAIN")
    creds = exchange.step(response)
    assert isinstance(creds, Credentials)
    return asyncio.run(sasl.authenticate(userdb, creds))


# Case 015, probe by probe (the base64 strings are the case's own).


def test_issue_015_no_authzid_succeeds(userdb: UserDB) -> None:
    response = b"AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNz"
    assert login(userdb, response) == "alice@example.test"


def test_issue_015_authzid_equal_to_authcid_succeeds(userdb: UserDB) -> None:
    response = b"YWxpY2VAZXhhbXBsZS50ZXN0AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNz"
    assert login(userdb, response) == "alice@example.test"


def test_issue_015_authzid_equal_ignoring_case(userdb: UserDB) -> None:
    response = b64(b"Alice@Example.test\0alice@example.test\0alice-pass")
    assert login(userdb, response) == "alice@example.test"


def test_issue_015_empty_authcid_is_malformed_never_bob() -> None:
    # RFC 4616 2: authcid is 1*SAFE; the authzid must not stand in for it
    with pytest.raises(SaslError) as info:
        Exchange("PLAIN").step(b"Ym9iQGV4YW1wbGUudGVzdAAAYWxpY2UtcGFzcw==")
    assert info.value.failure is Failure.MALFORMED


def test_issue_015_other_authzid_is_refused(userdb: UserDB) -> None:
    # alice's right password, asking to act as bob: RFC 4616 2 lets the
    # server refuse, and Roost has no "may act as" relation
    response = b"Ym9iQGV4YW1wbGUudGVzdABhbGljZUBleGFtcGxlLnRlc3QAYWxpY2UtcGFzcw=="
    assert login(userdb, response) is None
    assert not sasl.authorized("bob@example.test", "alice@example.test")
    assert not sasl.authorized("../bob", "alice@example.test")


def test_issue_015_one_nul_is_malformed() -> None:
    with pytest.raises(SaslError) as info:
        sasl.decode_plain(b"YWxpY2VAZXhhbXBsZS50ZXN0AGFsaWNlLXBhc3M=")
    assert info.value.failure is Failure.MALFORMED


def test_issue_015_not_base64() -> None:
    with pytest.raises(SaslError) as info:
        Exchange("PLAIN").step(b"!!!not-base64!!!")
    assert info.value.failure is Failure.BASE64


def test_issue_015_star_aborts() -> None:
    exchange = Exchange("PLAIN")
    assert exchange.step(None) == b""
    with pytest.raises(SaslError) as info:
        exchange.step(b"*")
    assert info.value.failure is Failure.ABORTED


def test_wrong_password_and_unknown_user(userdb: UserDB) -> None:
    assert login(userdb, b64(b"\0alice@example.test\0bob-pass")) is None
    assert login(userdb, b64(b"\0carol@example.test\0x")) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"alice",
        b"\0\0",
        b"\0alice\0",
        b"a\0b\0c\0d",
        b"\0\xff\xfe\0pw",
        b"\0alice\0\xc3",
    ],
)
def test_malformed_plain_messages(raw: bytes) -> None:
    with pytest.raises(SaslError) as info:
        sasl.decode_plain(b64(raw))
    assert info.value.failure is Failure.MALFORMED


def test_equals_sign_is_the_empty_response() -> None:
    assert sasl.decode_response(b"=") == b""
    with pytest.raises(SaslError):
        sasl.decode_plain(b"=")


@pytest.mark.parametrize("text", [b"YWJj=", b"YW Jj", b"YWJ\x00", b"\xff\xfe"])
def test_strict_base64(text: bytes) -> None:
    with pytest.raises(SaslError) as info:
        sasl.decode_response(text)
    assert info.value.failure is Failure.BASE64


def test_overlong_response_is_refused_before_decoding() -> None:
    with pytest.raises(SaslError) as info:
        sasl.decode_response(b"A" * (sasl.MAX_RESPONSE_BYTES + 4))
    assert info.value.failure is Failure.MALFORMED


def test_plain_with_initial_response_and_utf8() -> None:
    creds = Exchange("plain").step(b64("\0jürgen\0pässwort".encode()))
    assert creds == Credentials("", "jürgen", "pässwort")
    assert "pässwort" not in repr(creds)


def test_login_exchange(userdb: UserDB) -> None:
    exchange = Exchange("LOGIN")
    assert exchange.step(None) == b"VXNlcm5hbWU6"
    assert exchange.step(b64(b"bob@example.test")) == b"UGFzc3dvcmQ6"
    creds = exchange.step(b64(b"bob-pass"))
    assert creds == Credentials("", "bob@example.test", "bob-pass")
    assert isinstance(creds, Credentials)
    assert asyncio.run(sasl.authenticate(userdb, creds)) == "bob@example.test"


def test_login_with_initial_response() -> None:
    exchange = Exchange("LOGIN")
    assert exchange.step(b64(b"bob")) == sasl.LOGIN_PASSWORD_CHALLENGE
    assert exchange.step(b64(b"pw")) == Credentials("", "bob", "pw")


@pytest.mark.parametrize(
    ("lines", "failure"),
    [
        ([b"*"], Failure.ABORTED),
        ([b64(b"bob"), b"*"], Failure.ABORTED),
        ([b"="], Failure.MALFORMED),
        ([b64(b"bob"), b"%%"], Failure.BASE64),
        ([b64(b"b\0b")], Failure.MALFORMED),
    ],
)
def test_login_failures(lines: list[bytes], failure: Failure) -> None:
    exchange = Exchange("LOGIN")
    exchange.step(None)
    for line in lines[:-1]:
        exchange.step(line)
    with pytest.raises(SaslError) as info:
        exchange.step(lines[-1])
    assert info.value.failure is failure


def test_unknown_mechanism() -> None:
    with pytest.raises(SaslError) as info:
        Exchange("CRAM-MD5")
    assert info.value.failure is Failure.MECHANISM


def test_missing_response_after_start() -> None:
    exchange = Exchange("PLAIN")
    exchange.step(None)
    with pytest.raises(SaslError):
        exchange.step(None)


@given(st.binary(max_size=300))
def test_arbitrary_plain_bytes_give_credentials_or_sasl_error(raw: bytes) -> None:
    for response in (raw, b64(raw)):
        try:
            creds = Exchange("PLAIN").step(response)
        except SaslError:
            continue
        assert isinstance(creds, Credentials)
        assert creds.authcid
        assert creds.password
