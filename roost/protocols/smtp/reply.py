"""SMTP server replies (RFC 5321 4.2) and the one error type.

Reply codes and enhanced status codes (RFC 3463, RFC 2034) used by the
server core and by smtpd are named here, once. Handlers raise
`SmtpError(REPLY)`; only the command loop turns a Reply into bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Reply:
    """One server reply: code, optional enhanced code, text lines.

    The enhanced code goes on every line (RFC 2034 3); the greeting and
    the EHLO/HELO reply carry none, as postfix sends them.
    """

    code: int
    enhanced: str | None
    lines: tuple[str, ...]

    @classmethod
    def of(cls, code: int, enhanced: str | None, *lines: str) -> Reply:
        return cls(code, enhanced, lines or ("",))

    def with_text(self, text: str) -> Reply:
        """The same codes with other text (e.g. the address appended)."""
        return replace(self, lines=(text,))

    def to_bytes(self) -> bytes:
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not hold CR or LF")
            sep = " " if i == last else "-"
            text = f"{self.enhanced} {line}" if self.enhanced else line
            # "334 " keeps its space: some clients split on it (RFC 4954 4)
            out.append(f"{self.code}{sep}{text}\r\n")
        return "".join(out).encode("utf-8")

    def __str__(self) -> str:
        text = " ".join(self.lines)
        if self.enhanced:
            return f"{self.code} {self.enhanced} {text}"
        return f"{self.code} {text}"

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400


class SmtpError(Exception):
    """A refusal: carries the whole reply to send."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


# RFC 5321 4.2.2 / 4.2.3 and RFC 3463 enhanced codes ------------------

OK = Reply.of(250, "2.0.0", "Ok")
SENDER_OK = Reply.of(250, "2.1.0", "Ok")
RECIPIENT_OK = Reply.of(250, "2.1.5", "Ok")
START_DATA = Reply.of(354, None, "End data with <CR><LF>.<CR><LF>")
BYE = Reply.of(221, "2.0.0", "Bye")
HELP = Reply.of(214, "2.0.0", "See RFC 5321 and https://www.rfc-editor.org")
CANNOT_VRFY = Reply.of(
    252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery"
)
READY_FOR_TLS = Reply.of(220, "2.0.0", "Ready to start TLS")

# sequence errors (RFC 5321 4.1.4, 4.2.4)
NEED_HELO = Reply.of(503, "5.5.1", "Error: send HELO/EHLO first")
NESTED_MAIL = Reply.of(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = Reply.of(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = Reply.of(503, "5.5.1", "Error: need RCPT command")
IN_TRANSACTION = Reply.of(503, "5.5.1", "Error: MAIL transaction in progress")
ALREADY_AUTHENTICATED = Reply.of(503, "5.5.1", "Error: already authenticated")
TLS_ACTIVE = Reply.of(554, "5.5.1", "Error: TLS already active")
NOT_IMPLEMENTED = Reply.of(502, "5.5.1", "Error: command not implemented")
# RFC 3030 3: DATA may not follow BDAT; nothing but BDAT, RSET, NOOP,
# QUIT and HELP between chunks
IN_BDAT = Reply.of(503, "5.5.1", "Error: BDAT transaction in progress")

# syntax errors (RFC 5321 4.2.2 500/501, RFC 3463 5.5.x)
UNKNOWN_COMMAND = Reply.of(500, "5.5.2", "Error: command not recognized")
EMPTY_COMMAND = Reply.of(500, "5.5.2", "Error: bad syntax")
LINE_TOO_LONG = Reply.of(500, "5.5.0", "Error: line too long")
BAD_CHARACTER = Reply.of(501, "5.5.2", "Syntax error (invalid character)")
SYNTAX_HELO = Reply.of(501, "5.5.4", "Syntax: HELO hostname")
SYNTAX_EHLO = Reply.of(501, "5.5.4", "Syntax: EHLO hostname")
SYNTAX_MAIL = Reply.of(501, "5.5.4", "Syntax: MAIL FROM:<address>")
SYNTAX_RCPT = Reply.of(501, "5.5.4", "Syntax: RCPT TO:<address>")
SYNTAX_VRFY = Reply.of(501, "5.5.4", "Syntax: VRFY address")
SYNTAX_AUTH = Reply.of(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
# Without a count the chunk cannot be skipped: fatal (see server.py)
SYNTAX_BDAT = Reply.of(501, "5.5.4", "Syntax: BDAT count [LAST]")
NO_ARGUMENTS = Reply.of(501, "5.5.4", "Syntax error: no arguments allowed")
BAD_ADDRESS_SYNTAX = Reply.of(501, "5.1.3", "Bad address syntax")
BAD_SENDER_SYNTAX = Reply.of(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply.of(501, "5.1.3", "Bad recipient address syntax")
BAD_UTF8_ADDRESS = Reply.of(501, "5.1.3", "Invalid UTF-8 in address")
# RFC 6531 3.2 and 3.7.4.3 give 553 5.6.7 for non-ASCII without SMTPUTF8
NEED_SMTPUTF8 = Reply.of(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")

# ESMTP parameters (RFC 5321 4.1.1.11: 555 for unknown parameters)
UNKNOWN_PARAMETER = Reply.of(555, "5.5.4", "Unsupported option")
BAD_PARAMETER = Reply.of(501, "5.5.4", "Bad parameter syntax")
DUPLICATE_PARAMETER = Reply.of(501, "5.5.4", "Duplicate parameter")
BAD_SIZE = Reply.of(501, "5.5.4", "Invalid SIZE parameter")

# message content (RFC 1870 6, RFC 5321 4.5.3.1.9 / 4.5.3.1.10)
MESSAGE_TOO_BIG = Reply.of(
    552, "5.3.4", "Message size exceeds fixed maximum message size"
)
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Error: too many recipients")
NUL_IN_DATA = Reply.of(550, "5.6.0", "Message contains NUL characters")

# session (RFC 2920 3.1 pipelining; postfix's protocol synchronization)
SYNCHRONIZATION = Reply.of(554, "5.5.0", "Error: SMTP protocol synchronization")
AUTH_ABORTED = Reply.of(501, "5.0.0", "Authentication aborted")
