"""Roost authentication: the users file, password schemes, SASL, throttling.

userdb = UserDB(settings.users_file)
user = await userdb.averify(name, password)     # canonical name or None
exchange = sasl.Exchange("PLAIN")                # see roost.auth.sasl
"""

from roost.auth import sasl
from roost.auth.schemes import (
    ARGON2ID,
    DEFAULT_SCHEME,
    SHA512_CRYPT,
    UnknownScheme,
    hash_password,
    verify_password,
)
from roost.auth.throttle import AuthThrottle
from roost.auth.userdb import (
    BadPassword,
    InvalidUserName,
    UnknownUser,
    User,
    UserDB,
    UserError,
    UserExists,
    normalize_name,
    write_atomic,
)

__all__ = [
    "ARGON2ID",
    "DEFAULT_SCHEME",
    "SHA512_CRYPT",
    "AuthThrottle",
    "BadPassword",
    "InvalidUserName",
    "UnknownScheme",
    "UnknownUser",
    "User",
    "UserDB",
    "UserError",
    "UserExists",
    "hash_password",
    "normalize_name",
    "sasl",
    "verify_password",
    "write_atomic",
]
