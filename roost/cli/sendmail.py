"""sendmail: queue a message from a local program, as postfix's sendmail.

    sendmail [-C|-c PATH] [-t] [-i|-oi] [-f SENDER] [-F NAME] [-N DSN]
             [-R RET] [-V ENVID] [--] [RECIPIENT...]

The message is read from standard input (LF or CRLF line ends; without
-i a line with a single "." ends it).  Like postfix's cleanup, missing
Date, Message-ID and From headers are added, and Bcc is removed.  The
message is written durably into the maildrop, so this works with no
server running; a running server is told to pick it up at once.  The
queue directory must exist (the server makes it at its first start):
sendmail never creates one, so a wrong or ignored configuration fails
loudly instead of leaving mail where no server looks.
`sendmail -bp` is mailq.  Exit status 0, or 75 (EX_TEMPFAIL) when the
message could not be queued (no queue directory included), 78 on a bad
configuration, 64 on bad usage.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import pwd
import sys
import time
from dataclasses import dataclass, field

from roost.cli.queuetools import (
    EX_DATAERR,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    FatalError,
    ask_server,
    load_settings,
    open_spool,
    run,
)
from roost.config import Settings
from roost.queue import Envelope, Recipient

# Options that take an argument, attached (-fuser) or separate (-f user).
_WITH_ARGUMENT = set("bfFrNRVBCLOXhpq")
_HEADER_LIMIT_BYTES = 1024 * 1024


@dataclass
class Options:
    config: str | None = None
    extract: bool = False
    dots_end_input: bool = True
    sender: str | None = None
    full_name: str | None = None
    notify: tuple[str, ...] = ()
    ret: str | None = None
    envid: str | None = None
    mode: str = "m"
    recipients: list[str] = field(default_factory=list)


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> Options:
    """Parse sendmail's getopt-style options (sendmail(1) as postfix has it)."""
    opts = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if not arg.startswith("-") or arg == "-":
            args.insert(0, arg)
            break
        flag, rest = arg[1:2], arg[2:]
        if flag == "o":
            # -oi, -odb, -oem...: only -oi matters
            if rest == "i":
                opts.dots_end_input = False
            continue
        if flag in _WITH_ARGUMENT or flag == "c":
            if not rest:
                if not args:
                    raise UsageError(f"option -{flag} requires an argument")
                rest = args.pop(0)
            _take_argument(opts, flag, rest)
            continue
        for letter in arg[1:]:
            _take_flag(opts, letter)
    opts.recipients.extend(args)
    return opts


def _take_argument(opts: Options, flag: str, value: str) -> None:
    if flag in "cC":
        # -C is postfix's (the configuration directory); -c is Roost's
        opts.config = value
    elif flag in "fr":
        opts.sender = value
    elif flag == "F":
        opts.full_name = value
    elif flag == "N":
        parts = [p.strip().upper() for p in value.split(",") if p.strip()]
        opts.notify = tuple("NEVER" if p == "NEVER" else p for p in parts)
    elif flag == "R":
        opts.ret = "FULL" if value.lower() == "full" else "HDRS"
    elif flag == "V":
        opts.envid = value
    elif flag == "b":
        opts.mode = value


def _take_flag(opts: Options, letter: str) -> None:
    if letter == "t":
        opts.extract = True
    elif letter == "i":
        opts.dots_end_input = False
    elif letter in "vnUG":
        return  # accepted and ignored, as postfix does
    else:
        raise UsageError(f"unknown option -{letter}")


def read_message(stream: object, dots_end_input: bool) -> bytes:
    """Read the message; normalise line ends to CRLF."""
    raw: bytes = stream.read()  # type: ignore[attr-defined]
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if dots_end_input:
        for index, line in enumerate(lines):
            if line == b".":
                lines = lines[:index]
                break
    return b"".join(line + b"\r\n" for line in lines)


def _split_header(data: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (folded lines joined to their field) and the body.

    The header ends at the first empty line, which is dropped, or at the
    first line that is neither a field nor a continuation, which starts
    the body (RFC 5322 2.1, 3.5); postfix's cleanup reads it the same way.
    """
    fields: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        line_end = len(data) if end < 0 else end
        line = data[pos:line_end]
        if not line:
            return fields, data[min(line_end + 2, len(data)) :]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif _is_field(line):
            fields.append(line)
        else:
            break
        pos = line_end + 2
    return fields, data[pos:]


def _is_field(line: bytes) -> bool:
    # RFC 5322 3.6.8: a field name is printable US-ASCII except ":"
    name, colon, _ = line.partition(b":")
    return bool(colon) and bool(name) and all(33 <= c <= 126 for c in name)


def _field_name(field_line: bytes) -> str:
    return field_line.split(b":", 1)[0].decode("ascii", "replace").strip().lower()


def _field_value(field_line: bytes) -> str:
    return field_line.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "")


def _qualify(address: str, settings: Settings) -> str:
    # postfix's append_at_myorigin: bare local names are ours
    if address and "@" not in address:
        return f"{address}@{settings.myorigin}"
    return address


def _login_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def build(
    opts: Options, data: bytes, settings: Settings, message_id: str
) -> tuple[Envelope, bytes]:
    """The envelope and the message with the headers cleanup would add."""
    fields, body = _split_header(data)
    names = {_field_name(f) for f in fields}

    sender = opts.sender if opts.sender is not None else _login_name()
    sender = sender.strip().strip("<>")
    sender = _qualify(sender, settings)

    recipients = [_qualify(r.strip("<>"), settings) for r in opts.recipients]
    if opts.extract:
        values = [
            _field_value(f) for f in fields if _field_name(f) in ("to", "cc", "bcc")
        ]
        for _, address in email.utils.getaddresses(values):
            if address:
                recipients.append(_qualify(address, settings))
    recipients = [r for r in dict.fromkeys(recipients) if r]
    if not recipients:
        raise UsageError(
            "no recipient addresses found in message header"
            if opts.extract
            else "no recipients specified"
        )

    added: list[str] = []
    if "from" not in names:
        shown = sender or f"MAILER-DAEMON@{settings.myhostname}"
        if opts.full_name:
            added.append(f"From: {email.utils.formataddr((opts.full_name, shown))}")
        else:
            added.append(f"From: {shown}")
    if "date" not in names:
        added.append(f"Date: {email.utils.formatdate(localtime=True)}")
    if "message-id" not in names:
        added.append(f"Message-ID: <{message_id}@{settings.myhostname}>")
    kept = [f for f in fields if _field_name(f) != "bcc"]
    head = b"".join(f + b"\r\n" for f in kept)
    head += "".join(a + "\r\n" for a in added).encode("utf-8")
    message = head + b"\r\n" + body

    envelope = Envelope(
        mail_from=sender,
        recipients=[Recipient(r, None, opts.notify) for r in recipients],
        arrival_time=time.time(),
        local_uid=os.getuid(),
        dsn_ret=opts.ret,
        dsn_envid=opts.envid,
        body_type="8BITMIME" if any(b > 127 for b in message) else "7BIT",
    )
    return envelope, message


def _main(argv: list[str] | None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"sendmail: fatal: {exc}", file=sys.stderr)
        return EX_USAGE
    if opts.mode == "p":
        from roost.cli.postqueue import mailq_main

        return mailq_main(["-c", opts.config] if opts.config else [])
    if opts.mode not in ("m", ""):
        print(f"sendmail: fatal: unsupported: -b{opts.mode}", file=sys.stderr)
        return EX_USAGE

    settings = load_settings(opts.config)
    spool = open_spool(settings)
    data = read_message(sys.stdin.buffer, opts.dots_end_input)
    try:
        envelope, message = build(
            opts, data, settings, spool.new_queue_id() + "." + str(int(time.time()))
        )
    except UsageError as exc:
        print(f"sendmail: fatal: {exc}", file=sys.stderr)
        return EX_DATAERR if opts.extract else EX_USAGE
    try:
        spool.drop(envelope, message)
    except OSError as exc:
        raise FatalError(f"cannot queue the message: {exc}", EX_TEMPFAIL) from exc
    # queued: a server that does not answer picks it up on its poll
    with contextlib.suppress(FatalError):
        ask_server(spool, {"cmd": "wakeup"})
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    return run("sendmail", _main, argv)
