"""postcat: show a queue file's envelope and message, as postfix's.

    postcat [-c PATH] [-e|-h|-b] -q ID...
    postcat [-e|-h|-b] FILE...

-e shows only the envelope, -h only the header, -b only the body.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from roost.cli.queuetools import (
    EX_OK,
    EX_USAGE,
    FatalError,
    load_settings,
    open_spool,
    run,
)
from roost.queue import (
    Envelope,
    QueueFileError,
    Spool,
    decode_queue_file,
    is_queue_id,
)
from roost.queue.spool import QueueState


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postcat", description="show queue files", add_help=False
    )
    parser.add_argument("-c", dest="config", metavar="PATH", default=None)
    parser.add_argument("-q", action="store_true", help="arguments are queue ids")
    parser.add_argument("-e", action="store_true", help="envelope only")
    parser.add_argument("-h", dest="header", action="store_true", help="header only")
    parser.add_argument("-b", action="store_true", help="body only")
    parser.add_argument("files", nargs="+", metavar="ID|FILE")
    return parser


def _envelope_lines(env: Envelope, state: QueueState) -> list[str]:
    lines = [
        f"message_size: {env.size:>15}",
        f"message_arrival_time: {time.asctime(time.localtime(env.arrival_time))}",
        f"queue_id: {env.queue_id}",
        f"sender: {env.mail_from}",
    ]
    for name in ("helo", "client_ip", "client_hostname", "sasl_username", "body_type"):
        value = getattr(env, name)
        if value:
            lines.append(f"{name}: {value}")
    if env.dsn_ret:
        lines.append(f"dsn_ret: {env.dsn_ret}")
    if env.dsn_envid:
        lines.append(f"dsn_envid: {env.dsn_envid}")
    for index, rcpt in enumerate(env.recipients):
        if rcpt.orcpt:
            lines.append(f"original_recipient: {rcpt.orcpt}")
        if rcpt.notify:
            lines.append(f"notify_flags: {','.join(rcpt.notify)}")
        done = state.done.get(index)
        label = "done_recipient" if done else "recipient"
        lines.append(f"{label}: {rcpt.address}")
        if index in state.reasons:
            lines.append(f"delay_reason: {state.reasons[index]}")
    if state.hold:
        lines.append("hold: yes")
    return lines


def _split(data: bytes) -> tuple[bytes, bytes]:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end >= 0:
            return data[: end + len(separator) // 2], data[end + len(separator) :]
    return data, b""


def show(
    label: str, env: Envelope, data: bytes, state: QueueState, args: argparse.Namespace
) -> None:
    out = sys.stdout.buffer
    everything = not (args.e or args.header or args.b)
    text = data.replace(b"\r\n", b"\n")
    header, body = _split(text)
    if everything or args.e:
        out.write(f"*** ENVELOPE RECORDS {label} ***\n".encode())
        for line in _envelope_lines(env, state):
            out.write(line.encode("utf-8", "surrogateescape") + b"\n")
    if everything:
        out.write(f"*** MESSAGE CONTENTS {label} ***\n".encode())
        out.write(text if text.endswith(b"\n") or not text else text + b"\n")
    if args.header:
        out.write(f"*** HEADER EXTRACTED {label} ***\n".encode())
        out.write(header)
    if args.b:
        out.write(f"*** MESSAGE CONTENTS {label} ***\n".encode())
        out.write(body)
    out.write(f"*** MESSAGE FILE END {label} ***\n".encode())


def read_queued(spool: Spool, queue_id: str) -> tuple[str, Envelope, bytes, QueueState]:
    """(queue name, envelope, message, state) of queue_id, queued or dropped.

    A maildrop file (what sendmail left, listed by mailq) is looked at
    when no queue file has the id, and the queue again when the file went
    meanwhile: the server picked it up.  Raises FileNotFoundError.
    """
    for in_maildrop in (False, True, False):
        try:
            if in_maildrop:
                env, data = spool.read_maildrop(queue_id)
                return "maildrop", env, data, QueueState()
            env, data = spool.read(queue_id)
        except FileNotFoundError:
            continue
        state = spool.read_state(queue_id)
        return spool.queue_name(state), env, data, state
    raise FileNotFoundError(queue_id)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.q:
        spool = open_spool(load_settings(args.config))
    status = EX_OK
    for name in args.files:
        try:
            if args.q:
                if not is_queue_id(name):
                    raise FileNotFoundError(name)
                queue_name, env, data, state = read_queued(spool, name)
                label = f"{queue_name}/{name}"
            else:
                env, data = decode_queue_file(Path(name).read_bytes())
                state, label = QueueState(), name
        except FileNotFoundError:
            print(f"postcat: fatal: open queue file {name}: not found", file=sys.stderr)
            status = EX_USAGE
            continue
        except (OSError, QueueFileError) as exc:
            raise FatalError(f"read {name}: {exc}") from exc
        show(label, env, data, state, args)
    sys.stdout.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    return run("postcat", _main, argv)
