#!/usr/bin/env python3
"""Print the README's configuration reference, or rewrite it in place.

    python scripts/config_reference.py            # print the table
    python scripts/config_reference.py --update README.md

The table comes from roost.config's PARAMETERS (the same rows `roost
config describe` prints), with the defaults as written in the table of
settings: `$name` references stay unexpanded, and a default computed
from the machine (the host name, data_directory) is described instead
of shown as this machine's value. The README holds the table between
two marker comments; tests/e2e/test_readme.py checks it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from roost.config import PARAMETERS

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def table() -> list[str]:
    rows = ["| name | default | meaning |", "|---|---|---|"]
    for name in sorted(PARAMETERS):
        meta = PARAMETERS[name].metadata
        default = meta["default"]
        # a callable default is computed on the machine: the meaning says how
        shown = f"`{default}`" if default else ""
        if callable(default):
            shown = "(computed)"
        doc = str(meta["doc"]).replace("|", "\\|")
        rows.append(f"| `{name}` | {shown} | {doc} |")
    return rows


def update(path: Path) -> bool:
    """Rewrite the table in path; True when it changed."""
    text = path.read_text()
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
    new = head + BEGIN + "\n" + "\n".join(table()) + "\n" + END + tail
    if new == text:
        return False
    path.write_text(new)
    return True


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--update":
        changed = update(Path(argv[1]))
        print(f"{argv[1]}: {'updated' if changed else 'already current'}")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
