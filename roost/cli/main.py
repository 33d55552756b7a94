"""The `roost` command: serve, manage users, check and show the config.

    roost [-c PATH] serve
    roost [-c PATH] user add|passwd|del NAME
    roost [-c PATH] user list
    roost [-c PATH] config check
    roost [-c PATH] config show [-n] [NAME...]
    roost [-c PATH] config describe [--markdown]
    roost [-c PATH] newaliases

PATH (or ROOST_CONFIG) is a main.cf file or the directory holding it, as
postfix's -c. Exit status: 0 done, 1 failed (the reason on stderr),
2 usage error.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import math
import re
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from roost.auth import UserDB, UserError
from roost.auth.schemes import DEFAULT_SCHEME, WRITABLE_SCHEMES
from roost.config import ConfigError, Settings, load, parameter_names

PROG = "roost"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# Maildir++ folders made for each new user; the IMAP server marks them
# with the RFC 6154 special-use attributes of the same names.
SPECIAL_FOLDERS = ("Sent", "Drafts", "Trash", "Junk")


class CommandError(Exception):
    """A command failed; the message is shown as `roost: error: ...`."""


def _parser() -> argparse.ArgumentParser:
    # -c is accepted before or after the command (default SUPPRESS keeps a
    # sub-command's missing -c from overwriting the global one)
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "-c",
        dest="config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="main.cf, or the directory holding it (default: $ROOST_CONFIG)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[config],
        description="Roost mail server: SMTP, queue, local delivery, IMAP, POP3.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    commands.add_parser(
        "serve", parents=[config], help="run every listener in the foreground"
    )
    commands.add_parser(
        "newaliases", parents=[config], help="check the alias_maps files"
    )
    _add_user_commands(commands, config)
    _add_config_commands(commands, config)
    return parser


def _add_user_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
) -> None:
    user = commands.add_parser("user", parents=[config], help="manage users")
    actions = user.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    for action, text in (
        ("add", "add a user (password from stdin, or prompted on a terminal)"),
        ("passwd", "change a user's password"),
    ):
        sub = actions.add_parser(action, parents=[config], help=text)
        sub.add_argument("name", metavar="NAME")
        sub.add_argument(
            "--scheme",
            type=str.upper,
            choices=WRITABLE_SCHEMES,
            default=DEFAULT_SCHEME,
            help=f"password scheme (default {DEFAULT_SCHEME})",
        )
    remove = actions.add_parser(
        "del", parents=[config], help="remove a user (mail is kept)"
    )
    remove.add_argument("name", metavar="NAME")
    actions.add_parser("list", parents=[config], help="list users")


def _add_config_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config: argparse.ArgumentParser,
) -> None:
    conf = commands.add_parser("config", parents=[config], help="configuration")
    actions = conf.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    actions.add_parser(
        "check", parents=[config], help="report errors with file:line (exit 1)"
    )
    show = actions.add_parser(
        "show", parents=[config], help="print parameters, as postconf"
    )
    show.add_argument(
        "-n",
        dest="non_default",
        action="store_true",
        help="only parameters set in main.cf",
    )
    show.add_argument("names", nargs="*", metavar="NAME")
    describe = actions.add_parser(
        "describe", parents=[config], help="list parameters with their meaning"
    )
    describe.add_argument("--markdown", action="store_true", help="as a Markdown table")


def main(argv: list[str] | None = None) -> int:
    """Run `roost` with argv (default sys.argv[1:]); returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits 0 for --help and 2 for usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    path: str | None = getattr(args, "config", None)
    handler = _HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        return handler(args, path)
    except CommandError as exc:
        _say(f"error: {exc}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_FAIL


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _settings(path: str | None) -> Settings:
    """Load the config or fail with every error listed on stderr."""
    try:
        settings = load(path)
    except ConfigError as exc:
        _report(exc.errors, exc.warnings)
        raise CommandError("configuration has errors, nothing done") from None
    _report([], settings.warnings)
    return settings


def _report(errors: Sequence[str], warnings: Sequence[str]) -> None:
    """Errors and warnings, in the order of the lines they name."""
    said = [(_line_of(e), "error", e) for e in errors]
    said += [(_line_of(w), "warning", w) for w in warnings]
    for _, level, message in sorted(said, key=lambda item: item[0]):
        _say(f"{level}: {message}")


def _line_of(message: str) -> float:
    # messages start "file:line: "; the others (about whole files) last
    found = re.match(r".*?:(\d+): ", message)
    return int(found.group(1)) if found else math.inf


# serve


def _serve(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    try:
        server = importlib.import_module("roost.server")
    except ModuleNotFoundError as exc:
        if exc.name != "roost.server":
            raise
        raise CommandError("this build of Roost has no server module") from None
    code: int = server.serve(settings)
    return code


# users


def _read_password(prompt_twice: bool) -> str:
    """One line of stdin, or a getpass prompt (twice) on a terminal."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if prompt_twice and getpass.getpass("Retype password: ") != first:
            raise CommandError("passwords do not match")
        return first

    line = sys.stdin.readline()
    if not line:
        raise CommandError("no password on standard input")
    return line.rstrip("\r\n")


def _user_add(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    userdb = UserDB(settings.users_file)
    password = _read_password(prompt_twice=True)
    try:
        name = userdb.add(args.name, password, scheme=args.scheme)
    except UserError as exc:
        raise CommandError(str(exc)) from None

    try:
        maildir = create_mailbox(settings, name)
    except OSError as exc:
        raise CommandError(
            f"user {name} added, but its mailbox could not be made: {exc}"
        ) from None
    print(f"added user {name}, mailbox {maildir}")
    return EXIT_OK


def _user_passwd(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    userdb = UserDB(settings.users_file)
    password = _read_password(prompt_twice=True)
    try:
        userdb.set_password(args.name, password, scheme=args.scheme)
    except UserError as exc:
        raise CommandError(str(exc)) from None
    print(f"password of {args.name.lower()} changed")
    return EXIT_OK


def _user_del(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    try:
        UserDB(settings.users_file).delete(args.name)
    except UserError as exc:
        raise CommandError(str(exc)) from None
    print(f"removed user {args.name.lower()} (mail kept)")
    return EXIT_OK


def _user_list(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    for name in UserDB(settings.users_file).list():
        print(name)
    return EXIT_OK


def create_mailbox(settings: Settings, name: str) -> Path:
    """Make name's Maildir with the special folders; returns its path.

    The mailstore's `create_user` does this when it exists (it may also
    set up its index); otherwise the Maildir++ folders are made here.
    """
    mailstore = importlib.import_module("roost.mailstore")
    create_user: Callable[[Settings, str], object] | None = getattr(
        mailstore, "create_user", None
    )
    maildir_module = importlib.import_module("roost.mailstore.maildir")
    maildir: Path = maildir_module.mailbox_path(settings.mailbox_directory, name)
    if create_user is not None:
        create_user(settings, name)
        return maildir

    maildir_module.ensure(maildir)
    for folder in SPECIAL_FOLDERS:
        path = maildir / f".{folder}"
        maildir_module.ensure(path)
        # Maildir++: marks a folder for courier's and dovecot's tools
        (path / "maildirfolder").touch(mode=0o600, exist_ok=True)
    return maildir


# configuration


def _config_check(args: argparse.Namespace, path: str | None) -> int:
    try:
        settings = load(path)
    except ConfigError as exc:
        _report(exc.errors, exc.warnings)
        return EXIT_FAIL

    _report([], [*settings.warnings, *_file_warnings(settings)])
    return EXIT_OK


def _file_warnings(settings: Settings) -> list[str]:
    """Problems with files the settings name, that do not stop a start."""
    warnings = []
    try:
        mode = settings.users_file.stat().st_mode
    except FileNotFoundError:
        warnings.append(f"{settings.users_file}: no users yet (roost user add)")
    else:
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                f"{settings.users_file}: readable by others "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
            )
    return warnings


def _config_show(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    lines = settings.show(non_default_only=args.non_default)
    if args.names:
        known = set(parameter_names())
        for name in args.names:
            if name not in known:
                _say(f"warning: {name}: unknown parameter")
        wanted = set(args.names)
        lines = [line for line in lines if line.partition(" =")[0] in wanted]
    for line in lines:
        print(line)
    return EXIT_OK


def _config_describe(args: argparse.Namespace, path: str | None) -> int:
    for line in _settings(path).describe(markdown=args.markdown):
        print(line)
    return EXIT_OK


def _newaliases(args: argparse.Namespace, path: str | None) -> int:
    settings = _settings(path)
    aliases = importlib.import_module("roost.delivery.aliases")
    try:
        warnings: list[str] = aliases.rebuild(settings)
    except aliases.AliasError as exc:
        for error in exc.errors:
            _say(f"error: {error}")
        return EXIT_FAIL
    for warning in warnings:
        _say(f"warning: {warning}")
    return EXIT_OK


_Handler = Callable[[argparse.Namespace, str | None], int]

_HANDLERS: dict[tuple[str, str | None], _Handler] = {
    ("serve", None): _serve,
    ("newaliases", None): _newaliases,
    ("user", "add"): _user_add,
    ("user", "passwd"): _user_passwd,
    ("user", "del"): _user_del,
    ("user", "list"): _user_list,
    ("config", "check"): _config_check,
    ("config", "show"): _config_show,
    ("config", "describe"): _config_describe,
}


if __name__ == "__main__":
    sys.exit(main())
