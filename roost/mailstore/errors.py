"""The mailstore's one error type.

``code`` is an IMAP response code word (RFC 5530) the service can pass on
as is: NONEXISTENT, ALREADYEXISTS, CANNOT, LIMIT, EXPUNGEISSUED, INUSE,
SERVERBUG.  ``text`` is public: short, no paths.
"""

from __future__ import annotations


class MailstoreError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
