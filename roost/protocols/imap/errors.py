"""The one IMAP error type: raise it anywhere, the command loop replies.

RFC 3501 7.1: BAD is a protocol-level error in the client's command (the
session goes on), NO an operational failure, BYE the end of the session.
Response codes (``TRYCREATE``, ``TOOBIG``...) travel with the error.
"""

from __future__ import annotations

from enum import Enum


class Status(Enum):
    OK = "OK"
    NO = "NO"
    BAD = "BAD"
    BYE = "BYE"


class ImapError(Exception):
    """A tagged NO/BAD (or untagged BYE) carrying its whole reply."""

    def __init__(self, status: Status, text: str, code: str | None = None):
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code

    @classmethod
    def bad(cls, text: str, code: str | None = None) -> ImapError:
        return cls(Status.BAD, text, code)

    @classmethod
    def no(cls, text: str, code: str | None = None) -> ImapError:
        return cls(Status.NO, text, code)

    @classmethod
    def bye(cls, text: str, code: str | None = None) -> ImapError:
        return cls(Status.BYE, text, code)

    def response(self, tag: str | None) -> bytes:
        """The reply line: tagged for NO/BAD (``*`` when no tag), BYE untagged."""
        if self.status is Status.BYE or tag is None:
            prefix = b"*"
        else:
            prefix = tag.encode("ascii")
        code = f"[{self.code}] " if self.code else ""
        line = f" {self.status.value} {code}{self.text}\r\n"
        return prefix + line.encode("ascii")
