"""POP3 (RFC 1939, 2449, 5034, 2595) as a sans-IO server core.

Public API: `Pop3Server` (the state machine), the events in `events`,
`Pop3Error` and `RespCode` (the one error type and its response codes),
the reply builders `ok_line` / `multiline`, and `DotStuffer` /
`served_size` for RETR and TOP bodies.
"""

from roost.protocols.pop3 import events
from roost.protocols.pop3.reply import (
    Pop3Error,
    RespCode,
    error_line,
    multiline,
    ok_line,
)
from roost.protocols.pop3.state import LEGAL_VERBS, Pop3Server, State
from roost.protocols.pop3.stuffing import DotStuffer, encode_message, served_size

__all__ = [
    "LEGAL_VERBS",
    "DotStuffer",
    "Pop3Error",
    "Pop3Server",
    "RespCode",
    "State",
    "encode_message",
    "error_line",
    "events",
    "multiline",
    "ok_line",
    "served_size",
]
