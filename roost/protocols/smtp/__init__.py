"""SMTP: the sans-IO server core, its events and replies, the envelope
grammar (client.py holds the client core)."""

from roost.protocols.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    BdatChunk,
    ConnectionClosed,
    Data,
    DataReceived,
    Ehlo,
    Event,
    Helo,
    Help,
    MailFrom,
    NeedData,
    Noop,
    Quit,
    RcptTo,
    Refused,
    Rset,
    StartTls,
    Vrfy,
)
from roost.protocols.smtp.grammar import Mailbox, Path, canonical_domain
from roost.protocols.smtp.params import MailParams, RcptParams
from roost.protocols.smtp.reply import Reply, SmtpError
from roost.protocols.smtp.server import ServerConnection, State, UsageError

__all__ = [
    "NEED_DATA",
    "Auth",
    "AuthResponse",
    "BdatChunk",
    "ConnectionClosed",
    "Data",
    "DataReceived",
    "Ehlo",
    "Event",
    "Helo",
    "Help",
    "MailFrom",
    "Mailbox",
    "MailParams",
    "NeedData",
    "Noop",
    "Path",
    "Quit",
    "RcptParams",
    "RcptTo",
    "Refused",
    "Reply",
    "Rset",
    "ServerConnection",
    "SmtpError",
    "StartTls",
    "State",
    "UsageError",
    "Vrfy",
    "canonical_domain",
]
