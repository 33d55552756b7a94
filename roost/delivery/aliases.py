"""alias_maps: files in /etc/aliases format, reloaded when they change.

Format (aliases(5)): ``name: value, value, ...``; ``#`` starts a comment
line; a line that starts with white space continues the previous one.
Names are case-insensitive.  A value is a local name, an address, a
``/file`` to append to, a ``|command`` and ``:include:/file``; a value may
be double-quoted to hold commas or spaces (``"|cmd -x, y"``).

There is no compiled database: `newaliases` (`rebuild`) checks the files
and reports problems, and a running server reloads a file as soon as its
modification time changes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from roost.config import table_path
from roost.config.settings import Settings

# Re-checking every file's mtime costs a stat per file; once a second is
# prompt enough for an administrator who just edited the file.
_CHECK_INTERVAL_S = 1.0


class AliasError(ValueError):
    """An aliases file has errors; `errors` lists "file:line: message"."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class AliasFile:
    """One parsed aliases file."""

    path: Path
    entries: dict[str, list[str]]
    errors: list[str]


def split_values(text: str) -> list[str]:
    """Split an alias value list on commas outside double quotes."""
    values: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            quoted = not quoted
            current.append(char)
        elif char == "," and not quoted:
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return [_unquote(v.strip()) for v in values if v.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        return inner.replace('\\"', '"').replace("\\\\", "\\")
    return value


def logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, text) of each logical line of a table file.

    Empty lines and lines whose first non-blank character is ``#`` are
    skipped; a line starting with white space continues the previous
    one (aliases(5), postmap(1)).
    """
    start = 0
    parts: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t" and parts:
            parts.append(stripped)
            continue
        if parts:
            yield start, " ".join(parts)
        start, parts = number, [stripped]
    if parts:
        yield start, " ".join(parts)


def parse(text: str, filename: str = "aliases") -> AliasFile:
    """Parse aliases text; errors are collected, good lines still count."""
    entries: dict[str, list[str]] = {}
    errors: list[str] = []
    for number, line in logical_lines(text):
        name, colon, rest = line.partition(":")
        name = _unquote(name.strip()).lower()
        if not colon or not name or any(c.isspace() for c in name):
            errors.append(f"{filename}:{number}: expected 'name: value'")
            continue
        values = split_values(rest)
        if not values:
            errors.append(f"{filename}:{number}: {name}: no value")
            continue
        if name in entries:
            errors.append(f"{filename}:{number}: {name}: duplicate entry ignored")
            continue
        entries[name] = values
    return AliasFile(Path(filename), entries, errors)


Parser = Callable[[str, str], AliasFile]


def load_file(path: Path, parser: Parser = parse) -> AliasFile:
    """Parse the table file at path; a missing file is empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return AliasFile(path, {}, [])
    parsed = parser(text, str(path))
    return AliasFile(path, parsed.entries, parsed.errors)


def alias_paths(settings: Settings) -> list[Path]:
    """The files of settings.alias_maps (types such as hash: stripped)."""
    return [Path(table_path(spec)) for spec in settings.alias_maps]


class AliasTable:
    """Look keys up in table files, first file first; reloads on change.

    parser reads one file (aliases(5) format by default; virtual.py
    passes the virtual(5) one).
    """

    def __init__(self, paths: list[Path], parser: Parser = parse) -> None:
        self.paths = list(paths)
        self.parser = parser
        self._lock = threading.Lock()
        self._files: list[AliasFile] = []
        self._stamps: list[tuple[int, int] | None] = []
        self._checked = float("-inf")
        self._reload()

    def _stamp(self, path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _reload(self) -> None:
        self._stamps = [self._stamp(p) for p in self.paths]
        self._files = [load_file(p, self.parser) for p in self.paths]

    def refresh(self, *, force: bool = False) -> None:
        """Reload files whose modification time or size changed."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < _CHECK_INTERVAL_S:
                return
            self._checked = now
            if force or [self._stamp(p) for p in self.paths] != self._stamps:
                self._reload()

    def lookup(self, name: str) -> list[str] | None:
        """The values for name (case-insensitive), or None."""
        self.refresh()
        key = name.lower()
        for parsed in self._files:
            if key in parsed.entries:
                return list(parsed.entries[key])
        return None

    @property
    def errors(self) -> list[str]:
        return [e for parsed in self._files for e in parsed.errors]


def rebuild(settings: Settings) -> list[str]:
    """`newaliases`: check every alias file; return warnings.

    Raises AliasError when a file has lines that cannot be used.  A
    running server needs no signal: it reloads changed files by itself.
    """
    warnings: list[str] = []
    errors: list[str] = []
    for path in alias_paths(settings):
        if not path.exists():
            warnings.append(f"{path}: no such file (no aliases from it)")
            continue
        errors.extend(load_file(path).errors)
    if errors:
        raise AliasError(errors)
    return warnings
