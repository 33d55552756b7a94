"""Typed IMAP commands and the grammar that reads them from tokens.

``parse_command(segments)`` returns one of the dataclasses below or raises
``ImapError`` (BAD for syntax, NO for a mailbox name Roost refuses).  One
parser per verb, found through ``_PARSERS`` keyed by the verb as sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from roost.protocols.imap.errors import ImapError
from roost.protocols.imap.grammar import (
    SequenceSet,
    decode_mutf7,
    parse_date,
    parse_date_time,
    parse_sequence_set,
)
from roost.protocols.imap.lexer import Atom, Lexer, PList, String, Token
from roost.protocols.imap.state import UID_COMMANDS

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_SYSTEM_BY_UPPER = {flag.upper(): flag for flag in SYSTEM_FLAGS}
_KEYWORD = re.compile(r"[!#$&'+,\-.0-9:;<=>?@A-Z^_`a-z|~]+")


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    name: str


@dataclass(frozen=True, slots=True)
class Simple(Command):
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, EXPUNGE, UNSELECT,
    IDLE, NAMESPACE: verbs without arguments."""


@dataclass(frozen=True, slots=True)
class Login(Command):
    user: bytes
    password: bytes


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class MailboxCommand(Command):
    """SELECT, EXAMINE, CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE."""

    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class ListCommand(Command):
    """LIST and LSUB; ``reference`` and ``pattern`` stay mUTF-7 text."""

    reference: str
    pattern: str
    subscribed_only: bool = False
    special_use_only: bool = False


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    flags: tuple[str, ...]
    date_time: dt.datetime | None
    message: bytes


@dataclass(frozen=True, slots=True)
class Section:
    """A BODY[section] spec (RFC 3501 6.4.5)."""

    part: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        pieces = [str(n) for n in self.part]
        if self.text:
            pieces.append(self.text)
        label = ".".join(pieces)
        if self.fields:
            label += " (" + " ".join(self.fields) + ")"
        return label


@dataclass(frozen=True, slots=True)
class FetchAtt:
    name: str  # FLAGS, UID, ENVELOPE, ..., BODY[] is "BODY" with a section
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    uid: bool
    sequence_set: SequenceSet
    items: tuple[FetchAtt, ...]


@dataclass(frozen=True, slots=True)
class Store(Command):
    uid: bool
    sequence_set: SequenceSet
    mode: str  # "", "+", "-"
    silent: bool
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Copy(Command):
    """COPY and MOVE."""

    uid: bool
    sequence_set: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search key.  ``op`` is the key name; ``args`` its arguments,
    already typed (strings, dates, numbers, sequence sets, sub-keys)."""

    op: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class Search(Command):
    uid: bool
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Id(Command):
    params: tuple[tuple[bytes, bytes | None], ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Enable(Command):
    capabilities: tuple[str, ...]


# --- the argument reader -----------------------------------------------


class Args:
    """Reads typed arguments from a token list; raises BAD when they end."""

    def __init__(self, tokens: list[Token] | tuple[Token, ...]) -> None:
        self._tokens = list(tokens)
        self._pos = 0

    def more(self) -> bool:
        return self._pos < len(self._tokens)

    def peek(self) -> Token | None:
        return self._tokens[self._pos] if self.more() else None

    def token(self) -> Token:
        if not self.more():
            raise ImapError.bad("Missing argument")
        self._pos += 1
        return self._tokens[self._pos - 1]

    def end(self) -> None:
        if self.more():
            raise ImapError.bad("Unexpected extra arguments")

    def atom(self) -> str:
        token = self.token()
        if not isinstance(token, Atom):
            raise ImapError.bad("Expected an atom")
        return token.value

    def astring(self) -> bytes:
        token = self.token()
        if isinstance(token, Atom):
            return token.value.encode("ascii")
        if isinstance(token, String):
            return token.value
        raise ImapError.bad("Expected a string")

    def plist(self) -> PList:
        token = self.token()
        if not isinstance(token, PList):
            raise ImapError.bad("Expected a parenthesized list")
        return token

    def number(self) -> int:
        text = self.atom()
        if not text.isascii() or not text.isdigit() or len(text) > 10:
            raise ImapError.bad("Expected a number")
        value = int(text)
        if value > 4_294_967_295:
            raise ImapError.bad("Number too large")
        return value

    def mailbox(self) -> str:
        return decode_mailbox(self.astring())

    def sequence_set(self) -> SequenceSet:
        return parse_sequence_set(self.atom())


def decode_mailbox(raw: bytes) -> str:
    """Decode a mailbox name as sent: INBOX in any case, else mUTF-7.

    An invalid name is refused with NO (RFC 3501 5.1.3, case 024).
    """
    if raw.upper() == b"INBOX":
        return "INBOX"
    try:
        name = decode_mutf7(raw)
    except ValueError:
        raise ImapError.no("Invalid mailbox name") from None
    if name.upper().startswith("INBOX/") and name[:5] != "INBOX":
        name = "INBOX" + name[5:]
    return name


def parse_flag(text: str) -> str:
    """A flag: a system flag (case-normalised) or a keyword atom."""
    if text.startswith("\\"):
        flag = _SYSTEM_BY_UPPER.get(text.upper())
        if flag is None:
            raise ImapError.bad("Invalid flag")
        return flag
    if not _KEYWORD.fullmatch(text):
        raise ImapError.bad("Invalid flag")
    return text


def parse_flag_list(items: tuple[Token, ...]) -> tuple[str, ...]:
    flags: list[str] = []
    for item in items:
        if not isinstance(item, Atom):
            raise ImapError.bad("Invalid flag")
        flags.append(parse_flag(item.value))
    return tuple(dict.fromkeys(flags))


# --- the parsers -------------------------------------------------------

Parser = Callable[[str, str, bool, Args], Command]


def _simple(tag: str, name: str, uid: bool, args: Args) -> Command:
    args.end()
    return Simple(tag, name)


def _login(tag: str, name: str, uid: bool, args: Args) -> Command:
    user, password = args.astring(), args.astring()
    args.end()
    return Login(tag, name, user, password)


def _authenticate(tag: str, name: str, uid: bool, args: Args) -> Command:
    mechanism = args.atom().upper()
    initial = args.astring() if args.more() else None  # RFC 4959 SASL-IR
    args.end()
    return Authenticate(tag, name, mechanism, initial)


def _mailbox(tag: str, name: str, uid: bool, args: Args) -> Command:
    mailbox = args.mailbox()
    if name == "CREATE" and args.more():
        args.plist()  # RFC 6154 USE list: accepted, attributes are fixed
    args.end()
    return MailboxCommand(tag, name, mailbox)


def _rename(tag: str, name: str, uid: bool, args: Args) -> Command:
    old, new = args.mailbox(), args.mailbox()
    args.end()
    return Rename(tag, name, old, new)


def _list(tag: str, name: str, uid: bool, args: Args) -> Command:
    subscribed = name == "LSUB"
    special_use = False
    if name == "LIST" and isinstance(args.peek(), PList):
        # RFC 5258 selection options: the two Roost acts on
        for option in args.plist().items:
            word = option.value.upper() if isinstance(option, Atom) else ""
            subscribed |= word == "SUBSCRIBED"
            special_use |= word == "SPECIAL-USE"
    reference = _list_text(args.token())
    pattern = _list_text(args.token())
    if name == "LIST" and args.more():
        if args.atom().upper() != "RETURN":
            raise ImapError.bad("Invalid LIST arguments")
        args.plist()  # we always return CHILDREN and SPECIAL-USE data
    args.end()
    return ListCommand(tag, name, reference, pattern, subscribed, special_use)


def _list_text(token: Token) -> str:
    if isinstance(token, Atom):
        raw = token.value.encode("ascii")
    elif isinstance(token, String):
        raw = token.value
    else:
        raise ImapError.bad("Expected a mailbox pattern")
    try:
        raw.decode("ascii")
    except UnicodeDecodeError:
        raise ImapError.bad("Mailbox pattern must be 7-bit") from None
    return raw.decode("ascii")


_STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE"}
)


def _status(tag: str, name: str, uid: bool, args: Args) -> Command:
    mailbox = args.mailbox()
    items: list[str] = []
    for item in args.plist().items:
        word = item.value.upper() if isinstance(item, Atom) else ""
        if word not in _STATUS_ITEMS:
            raise ImapError.bad("Invalid STATUS item")
        items.append(word)
    args.end()
    if not items:
        raise ImapError.bad("Empty STATUS item list")
    return Status(tag, name, mailbox, tuple(items))


def _append(tag: str, name: str, uid: bool, args: Args) -> Command:
    mailbox = args.mailbox()
    flags: tuple[str, ...] = ()
    date_time = None
    if isinstance(args.peek(), PList):
        flags = parse_flag_list(args.plist().items)
    nxt = args.peek()
    if isinstance(nxt, String) and not nxt.is_literal:
        date_time = parse_date_time(args.astring().decode("ascii", "replace"))
    message = args.token()
    if not isinstance(message, String) or not message.is_literal:
        raise ImapError.bad("APPEND needs the message as a literal")
    args.end()
    return Append(tag, name, mailbox, flags, date_time, message.value)


def _fetch(tag: str, name: str, uid: bool, args: Args) -> Command:
    sequence_set = args.sequence_set()
    token = args.token()
    args.end()
    if isinstance(token, PList):
        if not token.items:
            raise ImapError.bad("Empty FETCH item list")
        flat = [_fetch_att(item) for item in token.items]
    elif isinstance(token, Atom):
        flat = _fetch_macro(token.value) or [_fetch_att(token)]
    else:
        raise ImapError.bad("Invalid FETCH items")
    if uid and not any(att.name == "UID" for att in flat):
        flat.insert(0, FetchAtt("UID"))  # RFC 3501 6.4.8
    return Fetch(tag, name, uid, sequence_set, tuple(flat))


def _fetch_macro(text: str) -> list[FetchAtt] | None:
    names = {
        "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
        "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
        "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
    }.get(text.upper())
    if names is None:
        return None
    return [FetchAtt(n) for n in names]


_PLAIN_ATTS = frozenset(
    {
        "FLAGS",
        "UID",
        "ENVELOPE",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.TEXT",
        "RFC822.SIZE",
        "BODYSTRUCTURE",
        "BODY",
    }
)
_BODY_SECTION = re.compile(
    r"(BODY(?:\.PEEK)?)\[([^\]]*)\](?:<([0-9]{1,10})\.([0-9]{1,10})>)?",
    re.IGNORECASE,
)


def _fetch_att(token: Token) -> FetchAtt:
    if not isinstance(token, Atom):
        raise ImapError.bad("Invalid FETCH item")
    text = token.value
    if text.upper() in _PLAIN_ATTS:
        return FetchAtt(text.upper())
    match = _BODY_SECTION.fullmatch(text)
    if match is None:
        raise ImapError.bad("Invalid FETCH item")
    partial = None
    if match.group(3) is not None:
        start, count = int(match.group(3)), int(match.group(4))
        if count == 0 or start > 4_294_967_295 or count > 4_294_967_295:
            raise ImapError.bad("Invalid partial range")
        partial = (start, count)
    section = parse_section(match.group(2))
    peek = match.group(1).upper() == "BODY.PEEK"
    return FetchAtt("BODY", section, peek, partial)


_SECTION_TEXT = re.compile(
    r"((?:[1-9][0-9]{0,8}\.)*[1-9][0-9]{0,8})?\.?"
    r"(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?"
    r"(?: \((.*)\))?",
    re.IGNORECASE,
)


def parse_section(text: str) -> Section:
    """Parse the inside of ``BODY[...]`` (RFC 3501 6.4.5)."""
    match = _SECTION_TEXT.fullmatch(text)
    if match is None:
        raise ImapError.bad("Invalid section")
    numbers, word, fields = match.groups()
    if text.startswith(".") or (numbers is None and text[:1].isdigit()):
        raise ImapError.bad("Invalid section")
    if numbers and not word and text != numbers:
        raise ImapError.bad("Invalid section")
    part = tuple(int(n) for n in numbers.split(".")) if numbers else ()
    word = (word or "").upper()
    if word == "MIME" and not part:
        raise ImapError.bad("MIME needs a part number")
    if word.startswith("HEADER.FIELDS") != (fields is not None):
        raise ImapError.bad("Invalid section")
    names: tuple[str, ...] = ()
    if fields is not None:
        names = _header_names(fields)
    return Section(part, word, names)


def _header_names(text: str) -> tuple[str, ...]:
    lexer = Lexer([b"x " + text.encode("ascii")])
    lexer.read_word()
    names: list[str] = []
    for token in lexer.read_tokens():
        if isinstance(token, Atom):
            name = token.value
        elif isinstance(token, String):
            name = token.value.decode("ascii", "replace")
        else:
            raise ImapError.bad("Invalid header field list")
        if not name or ":" in name:
            raise ImapError.bad("Invalid header field name")
        names.append(name)
    if not names:
        raise ImapError.bad("Empty header field list")
    return tuple(names)


def _store(tag: str, name: str, uid: bool, args: Args) -> Command:
    sequence_set = args.sequence_set()
    item = args.atom().upper()
    match = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", item)
    if match is None:
        raise ImapError.bad("Invalid STORE item")
    token = args.token()
    if isinstance(token, PList):
        flags = parse_flag_list(token.items)
        args.end()
    else:
        rest: list[Token] = [token]
        while args.more():
            rest.append(args.token())
        flags = parse_flag_list(tuple(rest))
    silent = match.group(2) is not None
    return Store(tag, name, uid, sequence_set, match.group(1), silent, flags)


def _copy(tag: str, name: str, uid: bool, args: Args) -> Command:
    sequence_set = args.sequence_set()
    mailbox = args.mailbox()
    args.end()
    return Copy(tag, name, uid, sequence_set, mailbox)


def _expunge(tag: str, name: str, uid: bool, args: Args) -> Command:
    if not uid:
        return _simple(tag, name, uid, args)
    sequence_set = args.sequence_set()
    args.end()
    return UidExpunge(tag, name, sequence_set)


def _id(tag: str, name: str, uid: bool, args: Args) -> Command:
    token = args.token()
    args.end()
    if isinstance(token, Atom) and token.value.upper() == "NIL":
        return Id(tag, name)
    if not isinstance(token, PList) or len(token.items) % 2:
        raise ImapError.bad("Invalid ID parameters")
    values = Args(token.items)
    pairs: list[tuple[bytes, bytes | None]] = []
    while values.more():
        key = values.astring()
        value_token = values.peek()
        if isinstance(value_token, Atom) and value_token.value.upper() == "NIL":
            values.token()
            pairs.append((key, None))
        else:
            pairs.append((key, values.astring()))
    return Id(tag, name, tuple(pairs[:30]))


def _enable(tag: str, name: str, uid: bool, args: Args) -> Command:
    capabilities = []
    while args.more():
        capabilities.append(args.atom().upper())
    if not capabilities:
        raise ImapError.bad("ENABLE needs a capability")
    return Enable(tag, name, tuple(capabilities))


def _search(tag: str, name: str, uid: bool, args: Args) -> Command:
    charset = "US-ASCII"
    first = args.peek()
    if isinstance(first, Atom) and first.value.upper() == "CHARSET":
        args.token()
        charset = args.astring().decode("ascii", "replace").upper()
        if charset not in ("US-ASCII", "UTF-8"):
            raise ImapError.no("Unsupported charset", "BADCHARSET (US-ASCII UTF-8)")
    reader = _SearchReader(args, charset)
    keys = [reader.key(0)]
    while args.more():
        keys.append(reader.key(0))
    key = keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))
    return Search(tag, name, uid, charset, key)


MAX_SEARCH_DEPTH = 64

_NO_ARG_KEYS = frozenset(
    {
        "ALL",
        "ANSWERED",
        "DELETED",
        "DRAFT",
        "FLAGGED",
        "NEW",
        "OLD",
        "RECENT",
        "SEEN",
        "UNANSWERED",
        "UNDELETED",
        "UNDRAFT",
        "UNFLAGGED",
        "UNSEEN",
    }
)
_STRING_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
_DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})


class _SearchReader:
    def __init__(self, args: Args, charset: str) -> None:
        self._args = args
        self._charset = charset

    def text(self) -> str:
        raw = self._args.astring()
        try:
            return raw.decode("utf-8" if self._charset == "UTF-8" else "ascii")
        except UnicodeDecodeError:
            raise ImapError.bad("Search string not in the given charset") from None

    def key(self, depth: int) -> SearchKey:
        if depth > MAX_SEARCH_DEPTH:
            raise ImapError.bad("Search key too deeply nested")
        token = self._args.token()
        if isinstance(token, PList):
            inner = Args(token.items)
            sub = _SearchReader(inner, self._charset)
            keys = [sub.key(depth + 1)]
            while inner.more():
                keys.append(sub.key(depth + 1))
            return SearchKey("AND", tuple(keys))
        if not isinstance(token, Atom):
            raise ImapError.bad("Invalid search key")
        return self._atom_key(token.value, depth)

    def _atom_key(self, text: str, depth: int) -> SearchKey:
        word = text.upper()
        if word in _NO_ARG_KEYS:
            return SearchKey(word)
        if word in _STRING_KEYS:
            return SearchKey(word, (self.text(),))
        if word in _DATE_KEYS:
            raw = self._args.astring().decode("ascii", "replace")
            return SearchKey(word, (parse_date(raw),))
        if word in ("KEYWORD", "UNKEYWORD"):
            return SearchKey(word, (parse_flag(self._args.atom()),))
        if word in ("LARGER", "SMALLER"):
            return SearchKey(word, (self._args.number(),))
        if word == "HEADER":
            field_name = self.text()
            return SearchKey(word, (field_name, self.text()))
        if word == "UID":
            return SearchKey(word, (self._args.sequence_set(),))
        if word == "NOT":
            return SearchKey(word, (self.key(depth + 1),))
        if word == "OR":
            return SearchKey(word, (self.key(depth + 1), self.key(depth + 1)))
        if text[:1] in "0123456789*":
            return SearchKey("SEQ", (parse_sequence_set(text),))
        raise ImapError.bad("Unknown search key")


_PARSERS: dict[str, Parser] = {
    "CAPABILITY": _simple,
    "NOOP": _simple,
    "LOGOUT": _simple,
    "STARTTLS": _simple,
    "CHECK": _simple,
    "CLOSE": _simple,
    "UNSELECT": _simple,
    "IDLE": _simple,
    "NAMESPACE": _simple,
    "EXPUNGE": _expunge,
    "LOGIN": _login,
    "AUTHENTICATE": _authenticate,
    "SELECT": _mailbox,
    "EXAMINE": _mailbox,
    "CREATE": _mailbox,
    "DELETE": _mailbox,
    "SUBSCRIBE": _mailbox,
    "UNSUBSCRIBE": _mailbox,
    "RENAME": _rename,
    "LIST": _list,
    "LSUB": _list,
    "STATUS": _status,
    "APPEND": _append,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy,
    "MOVE": _copy,
    "SEARCH": _search,
    "ID": _id,
    "ENABLE": _enable,
}


def read_tag(segments: list[bytes]) -> str | None:
    """The tag of a command, or None when it has no valid tag."""
    line = segments[0]
    tag = line.split(b" ", 1)[0]
    if not tag or not re.fullmatch(rb"[!#$&',\-./0-9:;<=>?@A-Z\[\]^_`a-z|}~]+", tag):
        return None
    return tag.decode("ascii")


def parse_command(segments: list[bytes]) -> tuple[str, str, bool, Args]:
    """Read tag, verb and argument tokens; the verb is upper-cased.

    Returns (tag, verb, uid, args).  For ``UID FETCH`` the verb is
    ``FETCH`` and ``uid`` is true.
    """
    lexer = Lexer(segments)
    tag = lexer.read_word()
    if read_tag(segments) is None:
        raise ImapError.bad("Invalid tag")
    if lexer.at_end():
        raise ImapError.bad("Missing command")
    lexer.skip_space()
    verb = lexer.read_word().upper()
    uid = False
    if verb == "UID":
        lexer.skip_space()
        verb = lexer.read_word().upper()
        if verb not in UID_COMMANDS:
            raise ImapError.bad("Invalid UID command")
        uid = True
    return tag, verb, uid, Args(lexer.read_tokens())


def build_command(tag: str, verb: str, uid: bool, args: Args) -> Command:
    """Apply the verb's grammar to its arguments."""
    parser = _PARSERS.get(verb)
    if parser is None:
        raise ImapError.bad("Unknown command")
    return parser(tag, verb, uid, args)
