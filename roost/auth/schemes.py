"""Password schemes, dovecot-style: `{SCHEME}hash` strings.

New passwords are hashed with ARGON2ID (argon2-cffi, its RFC 9106
low-memory defaults); SHA512-CRYPT (libpass) is offered for files that
other tools must read too. Verification accepts both, the bare crypt
forms (`$6$...`, `$argon2id$...`, as dovecot's CRYPT scheme), and
`{PLAIN}` for hand-written test files. No crypto is done here by hand:
each scheme is one call into its library.
"""

from __future__ import annotations

import functools
import hmac

import argon2

# libpass ships no type information
from passlib.hash import sha512_crypt  # type: ignore[import-untyped]

ARGON2ID = "ARGON2ID"
SHA512_CRYPT = "SHA512-CRYPT"
DEFAULT_SCHEME = ARGON2ID
WRITABLE_SCHEMES = (ARGON2ID, SHA512_CRYPT)

_argon2 = argon2.PasswordHasher()

# glibc's and dovecot's default round count: libpass's own default
# (656000) makes one login cost a third of a second of CPU.
_SHA512_ROUNDS = 5000


class UnknownScheme(ValueError):  # noqa: N818 (reads as the condition)
    """The stored hash names a scheme Roost cannot verify."""


def hash_password(password: str, scheme: str = DEFAULT_SCHEME) -> str:
    """`{SCHEME}hash` for password, with a fresh random salt."""
    scheme = scheme.upper()
    if scheme == ARGON2ID:
        return "{ARGON2ID}" + _argon2.hash(password)
    if scheme == SHA512_CRYPT:
        hashed: str = sha512_crypt.using(rounds=_SHA512_ROUNDS).hash(password)
        return "{SHA512-CRYPT}" + hashed
    raise UnknownScheme(f"cannot hash with scheme {scheme!r}")


def split_scheme(stored: str) -> tuple[str, str]:
    """("SCHEME", "hash") of a stored password; bare hashes are CRYPT."""
    if stored.startswith("{"):
        end = stored.find("}")
        if end > 0:
            return stored[1:end].upper(), stored[end + 1 :]
    return "CRYPT", stored


def verify_password(stored: str, password: str) -> bool:
    """True when password matches the stored `{SCHEME}hash`.

    Raises UnknownScheme for a scheme (or a crypt variant) Roost does
    not implement, so the caller can log the broken entry.
    """
    scheme, hashed = split_scheme(stored)
    if scheme == "PLAIN":
        return hmac.compare_digest(hashed.encode(), password.encode())
    if scheme in ("CRYPT", ARGON2ID, "ARGON2I", SHA512_CRYPT):
        return _verify_crypt(hashed, password)
    raise UnknownScheme(f"unknown password scheme {scheme!r}")


def _verify_crypt(hashed: str, password: str) -> bool:
    if hashed.startswith(("$argon2id$", "$argon2i$")):
        try:
            return _argon2.verify(hashed, password)
        except argon2.exceptions.VerifyMismatchError:
            return False
        except (
            argon2.exceptions.InvalidHashError,
            argon2.exceptions.VerificationError,
        ):
            raise UnknownScheme("malformed argon2 hash") from None
    if hashed.startswith("$6$"):
        try:
            return bool(sha512_crypt.verify(password, hashed))
        except ValueError:
            raise UnknownScheme("malformed SHA512-CRYPT hash") from None
    raise UnknownScheme("unsupported crypt variant")


def needs_rehash(stored: str) -> bool:
    """True when stored should be replaced by a fresh default-scheme hash."""
    scheme, hashed = split_scheme(stored)
    if not hashed.startswith("$argon2id$"):
        return True
    return _argon2.check_needs_rehash(hashed)


@functools.cache
def dummy_hash() -> str:
    """A hash to verify in place of a missing user's, so that a wrong
    name costs as much time as a wrong password (no user-existence
    oracle, case 015)."""
    return hash_password("roost-dummy-password")
