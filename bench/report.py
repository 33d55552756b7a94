"""Markdown tables from a run's JSON lines (bench/results/*.jsonl).

    python3 bench/report.py bench/results/20261204-173000.jsonl

Each table row is one load case; every figure is the median over the
run's repetitions (with min-max when there were several).  The ratio is
Roost's median divided by the reference server's.  A figure marked `!`
had client errors; one marked `~` ran while other processes used more
CPU than the quiet threshold (the machine is shared).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterable
from typing import Any

Record = dict[str, Any]
Getter = Callable[[Record], float | None]


def load(path: str) -> list[Record]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


class Cell:
    """The figures of one (case, server) over the repetitions."""

    def __init__(self, records: list[Record], get: Getter) -> None:
        self.values = [v for r in records if (v := get(r)) is not None]
        self.errors = any(r["result"].get("errors") for r in records)
        self.disturbed = any(r.get("disturbed") for r in records)
        self.missing = bool(records) and len(self.values) < len(records)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def __str__(self) -> str:
        if not self.values:
            return "n/a" if self.missing else "-"
        text = _fmt(self.median)
        if len(self.values) > 1:
            text += f" ({_fmt(min(self.values))}-{_fmt(max(self.values))})"
        if self.missing:
            text += " (incomplete)"
        return text + ("!" if self.errors else "") + ("~" if self.disturbed else "")


def ratio(a: Cell, b: Cell) -> str:
    if a.median is None or b.median is None or b.median == 0:
        return "-"
    return f"{a.median / b.median:.2f}"


def _group(
    records: Iterable[Record], suite: str
) -> dict[tuple[Any, ...], dict[str, list[Record]]]:
    groups: dict[tuple[Any, ...], dict[str, list[Record]]] = {}
    for r in records:
        if r.get("type") != "run" or r["suite"] != suite:
            continue
        key = tuple(r["case"].values())
        groups.setdefault(key, {}).setdefault(r["server"], []).append(r)
    return groups


def _res(name: str) -> Getter:
    return lambda r: r["result"].get(name)


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 else f"{n} B"


def smtp_table(records: list[Record]) -> list[str]:
    groups = _group(records, "smtp")
    if not groups:
        return []
    lines = [
        "### SMTP to a local Maildir (msgs/s; acceptance = 250 after DATA, "
        "end-to-end = file in Maildir/new)",
        "",
        "| size | sessions | postfix accept | postfix e2e | Roost accept | Roost e2e "
        "| ratio accept | ratio e2e | p50 ms postfix / Roost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (size, conc, _n), by in groups.items():
        pf, ro = by.get("postfix", []), by.get("roost", [])
        pa, pe = Cell(pf, _res("accept_msgs_per_s")), Cell(pf, _res("e2e_msgs_per_s"))
        ra, re_ = Cell(ro, _res("accept_msgs_per_s")), Cell(ro, _res("e2e_msgs_per_s"))
        lp, lr = Cell(pf, _res("lat_p50_ms")), Cell(ro, _res("lat_p50_ms"))
        lines.append(
            f"| {_size(size)} | {conc} | {pa} | {pe} | {ra} | {re_} "
            f"| {ratio(ra, pa)} | {ratio(re_, pe)} "
            f"| {_fmt(lp.median)} / {_fmt(lr.median)} |"
        )
    return lines


def relay_table(records: list[Record]) -> list[str]:
    groups = _group(records, "relay")
    if not groups:
        return []
    lines = [
        "### Relay to smtp-sink via relayhost (msgs/s; relayed = counted by the sink)",
        "",
        "| size | sessions | postfix accept | postfix relayed | Roost accept "
        "| Roost relayed | ratio accept | ratio relayed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (size, conc, _n), by in groups.items():
        pf, ro = by.get("postfix", []), by.get("roost", [])
        pa, pr = Cell(pf, _res("accept_msgs_per_s")), Cell(pf, _res("relay_msgs_per_s"))
        ra, rr = Cell(ro, _res("accept_msgs_per_s")), Cell(ro, _res("relay_msgs_per_s"))
        lines.append(
            f"| {_size(size)} | {conc} | {pa} | {pr} | {ra} | {rr} "
            f"| {ratio(ra, pa)} | {ratio(rr, pr)} |"
        )
    return lines


def pop3_table(records: list[Record]) -> list[str]:
    groups = _group(records, "pop3")
    if not groups:
        return []
    lines = [
        "### POP3 (each session: USER/PASS, STAT, LIST, UIDL, RETR x 1000, QUIT)",
        "",
        "| clients | mailboxes | dovecot sessions/s | dovecot msgs/s "
        "| Roost sessions/s "
        "| Roost msgs/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for (clients, mailboxes, _sessions), by in groups.items():
        dv, ro = by.get("dovecot", []), by.get("roost", [])
        ds, dm = Cell(dv, _res("sessions_per_s")), Cell(dv, _res("retr_per_s"))
        rs, rm = Cell(ro, _res("sessions_per_s")), Cell(ro, _res("retr_per_s"))
        lines.append(
            f"| {clients} | {mailboxes} | {ds} | {dm} | {rs} | {rm} | {ratio(rm, dm)} |"
        )
    return lines


def imap_table(records: list[Record]) -> list[str]:
    groups = _group(records, "imap")
    if not groups:
        return []
    lines = [
        "### IMAP (each session: LOGIN, SELECT, UID FETCH 1:* (FLAGS RFC822.SIZE "
        "ENVELOPE), 50 x BODY.PEEK[], SEARCH HEADER, 3 x STORE, LOGOUT)",
        "",
        "| clients | dovecot ops/s | dovecot sessions/s | Roost ops/s "
        "| Roost sessions/s | ratio | slowest Roost command (p50 ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (clients, _sessions), by in groups.items():
        dv, ro = by.get("dovecot", []), by.get("roost", [])
        do, ds = Cell(dv, _res("ops_per_s")), Cell(dv, _res("sessions_per_s"))
        rop, rs = Cell(ro, _res("ops_per_s")), Cell(ro, _res("sessions_per_s"))
        slow = "-"
        if ro and ro[-1]["result"].get("cmd"):
            cmd = ro[-1]["result"]["cmd"]
            name = max(cmd, key=lambda k: cmd[k]["p50_ms"])
            dcmd = dv[-1]["result"].get("cmd", {}) if dv else {}
            ref = f" (dovecot {dcmd[name]['p50_ms']:.1f})" if name in dcmd else ""
            slow = f"{name} {cmd[name]['p50_ms']:.1f}{ref}"
        lines.append(
            f"| {clients} | {do} | {ds} | {rop} | {rs} | {ratio(rop, do)} | {slow} |"
        )
    return lines


def notes(records: list[Record]) -> list[str]:
    out = []
    for r in records:
        if r.get("type") == "note":
            out.append(f"- {r['text']}")
    return out


def markdown(records: list[Record]) -> str:
    meta = next((r for r in records if r.get("type") == "meta"), None)
    lines: list[str] = []
    if meta:
        m = meta["machine"]
        lines += [
            f"## Roost vs postfix/dovecot, {meta['started']} (run {meta['run_id']})",
            "",
            f"Machine: {m['cpus']} x {m['cpu_model']}, {m['mem_gb']} GB RAM, "
            f"kernel {m['kernel']}, {m['fs']} ({m['workdir']}); Python {m['python']}; "
            f"{m['postfix']}; dovecot {m['dovecot']}; Roost {m['roost']}. "
            "Client and servers share the CPUs; loopback only. "
            f"Plan: {meta['plan_text']}.",
            "",
        ]
    for table in (smtp_table, relay_table, pop3_table, imap_table):
        part = table(records)
        if part:
            lines += part + [""]
    extra = notes(records)
    if extra:
        lines += ["Notes:", *extra, ""]
    lines.append(
        "Figures are medians (min-max over repetitions); ratio = Roost / reference; "
        "`!` = the load client saw errors; `~` = other processes used the CPU "
        "during that run."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(markdown(load(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
