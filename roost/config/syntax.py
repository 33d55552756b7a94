"""main.cf syntax: logical lines, `name = value`, and `$name` expansion.

The grammar is postfix's (postconf(5)):

- a logical line starts with non-whitespace text; a physical line that
  starts with whitespace continues the previous logical line;
- a line whose first non-whitespace character is `#` is a comment, and so
  are empty lines; `#` later in a line is part of the value;
- a logical line is `name = value`, whitespace around `=` and at the ends
  of the value is dropped;
- `$name`, `${name}` and `$(name)` expand to another parameter's value,
  `${name?text}` to text when name is non-empty, `${name:text}` to text
  when it is empty, and `$$` to one `$`.

Nothing here knows which parameters exist: that is `settings.py`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z0-9_]+")


class ConfigSyntaxError(ValueError):
    """A malformed line or expansion; the message has no location."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One `name = value` logical line and where it started."""

    name: str
    value: str
    filename: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.line}"


def parse_lines(text: str, filename: str) -> tuple[list[Entry], list[str]]:
    """Split main.cf text into entries.

    Returns the entries in file order (a later entry for the same name
    overrides an earlier one, as in postfix) and a list of
    "file:line: message" errors for lines that are not `name = value`.
    """
    logical: list[tuple[int, list[str]]] = []
    errors: list[str] = []

    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if not logical:
                errors.append(
                    f"{filename}:{number}: logical line must not start with whitespace"
                )
                continue
            logical[-1][1].append(stripped)
            continue
        logical.append((number, [stripped]))

    entries: list[Entry] = []
    for number, parts in logical:
        line = " ".join(parts)
        try:
            name, value = _split_assignment(line)
        except ConfigSyntaxError as exc:
            errors.append(f"{filename}:{number}: {exc}")
            continue
        entries.append(Entry(name, value, filename, number))
    return entries, errors


def _split_assignment(line: str) -> tuple[str, str]:
    name, sep, value = line.partition("=")
    name = name.strip()
    if not sep:
        raise ConfigSyntaxError(f"missing '=' after {name.split()[0]!r}")
    if not _NAME.fullmatch(name):
        raise ConfigSyntaxError(f"bad parameter name {name!r}")
    return name, value.strip()


Lookup = Callable[[str], str]


def expand(value: str, lookup: Lookup) -> str:
    """Expand `$` references in value, asking lookup for each name.

    lookup returns the (already expanded) value of a name, or raises
    ConfigSyntaxError (an unknown name, a loop); the caller owns recursion
    and loop detection. Raises ConfigSyntaxError on malformed `${...}`.
    """
    out: list[str] = []
    i = 0
    while i < len(value):
        dollar = value.find("$", i)
        if dollar < 0:
            out.append(value[i:])
            break
        out.append(value[i:dollar])
        text, i = _expand_one(value, dollar, lookup)
        out.append(text)
    return "".join(out)


_CLOSE = {"{": "}", "(": ")"}


def _expand_one(value: str, dollar: int, lookup: Lookup) -> tuple[str, int]:
    """Expand the reference at value[dollar]; return text and next index."""
    start = dollar + 1
    if start >= len(value):
        return "$", start
    opener = value[start]
    if opener == "$":
        return "$", start + 1

    if opener not in _CLOSE:
        match = _NAME.match(value, start)
        if match is None:
            # a lone `$` before a non-name character stays literal
            return "$", start
        return lookup(match.group()), match.end()

    close = _find_close(value, start + 1, opener, _CLOSE[opener])
    inner = value[start + 1 : close]
    match = _NAME.match(inner)
    if match is None:
        raise ConfigSyntaxError(f"bad parameter name in ${opener}{inner}")
    name, rest = match.group(), inner[match.end() :]

    if not rest:
        return lookup(name), close + 1
    if rest[0] == "?":
        text = expand(rest[1:], lookup) if lookup(name) else ""
        return text, close + 1
    if rest[0] == ":":
        text = "" if lookup(name) else expand(rest[1:], lookup)
        return text, close + 1
    raise ConfigSyntaxError(f"bad expansion ${opener}{inner}")


def _find_close(value: str, i: int, opener: str, closer: str) -> int:
    depth = 1
    while i < len(value):
        if value[i] == opener:
            depth += 1
        elif value[i] == closer:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ConfigSyntaxError(f"missing '{closer}' in expansion")


def references(value: str) -> set[str]:
    """Names that value refers to with `$`, for 'unused parameter' checks."""
    names: set[str] = set()

    def note(name: str) -> str:
        names.add(name)
        return "x"

    with contextlib.suppress(ConfigSyntaxError):
        expand(value, note)
    return names


def split_list(value: str) -> list[str]:
    """Split a postfix list: elements separated by commas and/or whitespace."""
    return [item for item in re.split(r"[\s,]+", value) if item]
