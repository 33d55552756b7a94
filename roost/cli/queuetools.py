"""What sendmail, postqueue, postsuper and postcat share: the config, the
queue directory, talking to the running server, postfix's exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from roost.config import ConfigError, Settings, load
from roost.queue import Spool
from roost.queue.control import ControlError, request

# sysexits.h, as postfix's commands use them
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class FatalError(Exception):
    """Print "prog: fatal: message" and exit with status."""

    def __init__(self, message: str, status: int = EX_UNAVAILABLE) -> None:
        super().__init__(message)
        self.status = status


def load_settings(path: str | None) -> Settings:
    """Settings from -c PATH, else ROOST_CONFIG, else the defaults."""
    try:
        return load(path)
    except ConfigError as exc:
        lines = [*exc.errors, *(f"warning: {w}" for w in exc.warnings)]
        raise FatalError(
            "configuration errors:\n" + "\n".join(lines), EX_CONFIG
        ) from exc


def open_spool(settings: Settings) -> Spool:
    """The existing queue of settings; FatalError EX_TEMPFAIL without one.

    The tools never create a queue directory: one that is missing means
    the server never ran with this configuration (or the wrong one was
    read), and mail or changes left there would reach no server.
    """
    spool = Spool(settings.queue_directory, create=False)
    if not spool.maildrop.is_dir():
        where = settings.config_file or "the built-in defaults"
        raise FatalError(
            f"queue directory {spool.root} does not exist (configuration:"
            f" {where}); start the server once with this configuration,"
            " or name the right one (-c, sendmail -C, ROOST_CONFIG)",
            EX_TEMPFAIL,
        )
    return spool


def ask_server(spool: Spool, payload: dict[str, object]) -> dict[str, object] | None:
    """The server's reply, or None when no server is running."""
    if not spool.socket_path.exists():
        return None
    try:
        return request(spool, payload)
    except ControlError as exc:
        raise FatalError(f"queue manager: {exc}", EX_SOFTWARE) from exc
    except OSError:
        return None


@contextlib.contextmanager
def queue_locked(spool: Spool) -> Iterator[bool]:
    """Yield True holding the queue lock (no server), False if a server has it."""
    if not spool.lock_path.parent.is_dir():
        raise FatalError(f"no queue directory {spool.root}", EX_UNAVAILABLE)
    fd = spool.try_lock()
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        spool.unlock(fd)


def run(prog: str, main: object, argv: list[str] | None) -> int:
    """Call main(argv) turning FatalError and broken pipes into exit codes."""
    try:
        return int(main(argv))  # type: ignore[operator]
    except FatalError as exc:
        print(f"{prog}: fatal: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        # the reader (head, grep -q) went away: not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EX_OK
