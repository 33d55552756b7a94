"""virtual_alias_maps: address rewriting in postfix's virtual(5) format.

A table file holds ``pattern  address, address ...`` lines (white space
after the pattern; commas or white space between addresses; ``#``
comments; an indented line continues the previous one).  For
``user+ext@domain`` the patterns are tried in virtual(5)'s order:

    user+ext@domain, user@domain, user+ext, user, @domain

where the bare ``user`` forms count only for our own domains
(mydestination and myorigin), and ``@domain`` is the catch-all.  When
the match did not include the extension, ``+ext`` is added to each
result's local part (postfix's propagate_unmatched_extensions default).
A result ``@otherdomain`` (first address only) keeps the local part; a
result without ``@`` gets ``@$myorigin``.

A line whose pattern is a bare domain (``example.net  anything``) makes
that domain a virtual alias domain: its addresses exist only as table
entries.  Roost rewrites at delivery time (postfix does it in cleanup),
so the table applies to addresses in our domains only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from roost.delivery.aliases import AliasFile, AliasTable, logical_lines
from roost.protocols.smtp.grammar import canonical_domain, quote_local_part


@dataclass(frozen=True, slots=True)
class VirtualMatch:
    """The addresses a lookup gave, as (local part, domain) pairs."""

    key: str
    addresses: tuple[tuple[str, str], ...]


def split_addresses(text: str) -> list[str]:
    """Split on commas and white space outside double quotes."""
    values: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and (char == "," or char.isspace()):
            values.append("".join(current))
            current = []
            continue
        current.append(char)
    values.append("".join(current))
    return [v for v in values if v]


def parse(text: str, filename: str = "virtual") -> AliasFile:
    """Parse a virtual(5) table; bad lines are collected as errors."""
    entries: dict[str, list[str]] = {}
    errors: list[str] = []
    for number, line in logical_lines(text):
        # a quoted local part in the pattern may hold white space
        words = split_addresses(line)
        key, values = _canonical_key(words[0]), words[1:]
        if not values:
            errors.append(f"{filename}:{number}: {key}: no value")
        elif key in entries:
            # postmap(1) keeps the first entry too
            errors.append(f"{filename}:{number}: {key}: duplicate entry ignored")
        else:
            entries[key] = values
    return AliasFile(Path(filename), entries, errors)


def _canonical_key(key: str) -> str:
    # U- and A-label domains are one (RFC 5890); a local part keeps its
    # letters, only folded to lower case as postfix folds lookup keys
    local, at, domain = key.rpartition("@")
    if not at:
        return key.lower()
    return f"{local.lower()}@{canonical_domain(domain)}"


def format_address(local: str, domain: str) -> str:
    """local@domain with the local part quoted when it must be."""
    quoted = quote_local_part(local)
    return f"{quoted}@{domain}" if domain else quoted


def _split(value: str) -> tuple[str, str]:
    local, at, domain = value.rpartition("@")
    if not at:
        return value, ""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return local, canonical_domain(domain)


class VirtualAliases:
    """Lookups in virtual_alias_maps; files reload when they change."""

    def __init__(self, paths: Iterable[Path], myorigin: str, delimiters: str) -> None:
        self.table = AliasTable(list(paths), parse)
        self.myorigin = myorigin
        self.delimiters = delimiters

    @property
    def errors(self) -> list[str]:
        return self.table.errors

    def is_alias_domain(self, domain: str) -> bool:
        """Whether a ``domain anything`` line names this domain."""
        return bool(self.table.paths) and self.table.lookup(domain) is not None

    def _extension(self, local: str) -> tuple[str, str]:
        """(base, extension with its delimiter) of a local part."""
        if not self.delimiters:
            return local, ""
        cut = min((i for i, c in enumerate(local) if c in self.delimiters), default=-1)
        if cut <= 0:
            return local, ""
        return local[:cut], local[cut:]

    def lookup(
        self, local: str, domain: str, *, is_local_site: bool
    ) -> VirtualMatch | None:
        """The rewritten addresses of local@domain, or None for no entry."""
        if not self.table.paths:
            return None
        base, extension = self._extension(local)
        # (pattern, whether it matched the extension too)
        patterns = [(f"{local}@{domain}", True)]
        if extension:
            patterns.append((f"{base}@{domain}", False))
        if is_local_site:
            patterns.append((local, True))
            if extension:
                patterns.append((base, False))
        patterns.append((f"@{domain}", False))

        for key, matched_extension in patterns:
            values = self.table.lookup(key)
            if values is None:
                continue
            propagate = "" if matched_extension else extension
            return VirtualMatch(key, tuple(self._results(values, local, propagate)))
        return None

    def _results(
        self, values: list[str], local: str, extension: str
    ) -> Iterable[tuple[str, str]]:
        for index, value in enumerate(values):
            result_local, result_domain = _split(value)
            if not result_local and index == 0:
                # "@otherdomain": the same user in otherdomain
                yield local, result_domain
                continue
            if not result_domain:
                result_domain = self.myorigin
            if extension and not any(c in result_local for c in self.delimiters):
                result_local += extension
            yield result_local, result_domain
