"""What one delivery attempt did for one recipient."""

from __future__ import annotations

from dataclasses import dataclass

SENT = "sent"
DEFERRED = "deferred"
BOUNCED = "bounced"


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome for one recipient of one attempt.

    ``status`` is sent, deferred or bounced; ``dsn`` the enhanced status
    code (RFC 3463); ``reason`` the text for the log, mailq and the DSN;
    ``diagnostic`` the DSN Diagnostic-Code (``smtp; 550 5.1.1 ...``) when a
    remote server answered; ``remote_mta`` its name.
    """

    address: str
    status: str
    dsn: str
    reason: str
    relay: str = ""
    diagnostic: str = ""
    remote_mta: str = ""

    @classmethod
    def sent(cls, address: str, reason: str, relay: str = "") -> RecipientResult:
        return cls(address, SENT, "2.0.0", reason, relay)

    @classmethod
    def deferred(
        cls, address: str, reason: str, dsn: str = "4.0.0", relay: str = ""
    ) -> RecipientResult:
        return cls(address, DEFERRED, dsn, reason, relay)

    @classmethod
    def bounced(
        cls, address: str, reason: str, dsn: str = "5.0.0", relay: str = ""
    ) -> RecipientResult:
        return cls(address, BOUNCED, dsn, reason, relay)


def format_delay(seconds: float) -> str:
    """A delay as postfix logs it: 0.01 resolution, whole seconds past 10."""
    if seconds >= 10:
        return str(int(seconds))
    text = f"{max(seconds, 0.0):.2f}".rstrip("0").rstrip(".")
    return text or "0"
