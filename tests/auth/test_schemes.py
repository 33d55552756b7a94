"""Password schemes: ARGON2ID and SHA512-CRYPT through their libraries."""

import pytest

from roost.auth.schemes import (
    UnknownScheme,
    dummy_hash,
    hash_password,
    needs_rehash,
    split_scheme,
    verify_password,
)


def test_argon2id_is_the_default() -> None:
    stored = hash_password("s3cret")
    assert stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "s3cret ")
    assert not needs_rehash(stored)


def test_sha512_crypt() -> None:
    stored = hash_password("s3cret", "sha512-crypt")
    assert stored.startswith("{SHA512-CRYPT}$6$")
    assert verify_password(stored, "s3cret")
    assert not verify_password(stored, "S3cret")
    assert needs_rehash(stored)


def test_salts_differ() -> None:
    assert hash_password("x") != hash_password("x")


def test_bare_crypt_forms_as_dovecot_crypt() -> None:
    bare = hash_password("pw", "SHA512-CRYPT").removeprefix("{SHA512-CRYPT}")
    assert split_scheme(bare) == ("CRYPT", bare)
    assert verify_password(bare, "pw")
    argon = hash_password("pw").removeprefix("{ARGON2ID}")
    assert verify_password("{CRYPT}" + argon, "pw")


def test_plain_scheme_for_reading() -> None:
    assert verify_password("{PLAIN}hello", "hello")
    assert not verify_password("{plain}hello", "hell")


def test_non_ascii_password() -> None:
    stored = hash_password("pässwörd-密码")
    assert verify_password(stored, "pässwörd-密码")
    assert not verify_password(stored, "passwort")


@pytest.mark.parametrize(
    "stored",
    ["{MD5}abc", "$1$salt$hash", "{ARGON2ID}$argon2id$garbage", "{SHA512-CRYPT}$6$"],
)
def test_unknown_or_broken_hashes_raise(stored: str) -> None:
    with pytest.raises(UnknownScheme):
        verify_password(stored, "pw")


def test_cannot_hash_with_unknown_scheme() -> None:
    with pytest.raises(UnknownScheme):
        hash_password("pw", "MD5-CRYPT")


def test_dummy_hash_is_a_real_hash() -> None:
    assert verify_password(dummy_hash(), "roost-dummy-password")
    assert not verify_password(dummy_hash(), "")
