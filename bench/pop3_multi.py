"""POP3 load with one mailbox per client, on top of ../shared/bench/pop3_load.py.

RFC 1939 section 8 has a POP3 server lock the maildrop for the length of a
session, and Roost does ([IN-USE]), so N concurrent clients of ONE mailbox
measure lock refusals rather than throughput.  This runs pop3_load's own
session code (imported, not copied) with client i logged in as user i, so
N clients read N mailboxes at the same time, and prints the same JSON
object as `pop3_load.py --json` (sessions are pulled from one shared pool;
wall time from the first session's start to the last one's end).

  python3 pop3_multi.py --shared ../shared/bench --port 10110 \
      --users mbox1k-00,mbox1k-01 --password benchpass --sessions 20
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib
import json
import sys
import time
from typing import Any


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest-rank percentile, the rule pop3_load.py reports with."""
    if not sorted_vals:
        return None
    k = int(round(q / 100.0 * (len(sorted_vals) - 1)))
    return sorted_vals[max(0, min(len(sorted_vals) - 1, k))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", required=True, help="directory of pop3_load.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--users", required=True, help="comma-separated, one per client")
    ap.add_argument("--password", required=True)
    ap.add_argument("--sessions", type=int, required=True)
    ap.add_argument("--max-retr", type=int)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--max-time", type=float, default=120.0)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    sys.path.insert(0, a.shared)
    pop3_load = importlib.import_module("pop3_load")

    users = [u for u in a.users.split(",") if u]
    per_client = []
    for user in users:
        ns = copy.copy(a)
        ns.user, ns.auth = user, "user"
        per_client.append(ns)

    t0 = time.monotonic()
    st = pop3_load.Stats(a.sessions, t0 + a.max_time)

    async def run() -> None:
        await asyncio.gather(*(pop3_load.client(st, ns) for ns in per_client))

    asyncio.run(run())
    wall = time.monotonic() - t0

    slat = sorted(st.session_lat)
    ops = sum(len(v) for v in st.lat.values())
    out: dict[str, Any] = {
        "label": a.label,
        "host": a.host,
        "port": a.port,
        "clients": len(users),
        "mailboxes": len(users),
        "sessions": a.sessions,
        "procs": 1,
        "wall_s": round(wall, 4),
        "sessions_ok": st.sessions_ok,
        "sessions_per_s": round(st.sessions_ok / wall, 2),
        "retr": st.retr,
        "retr_per_s": round(st.retr / wall, 1),
        "MB_per_s": round(st.retr_bytes / wall / 1e6, 2),
        "ops_per_s": round(ops / wall, 1),
        "size_mismatch": st.size_mismatch,
        "errors": st.errors,
        "session_p50_ms": round(p * 1000, 2) if (p := percentile(slat, 50)) else None,
        "session_p99_ms": round(p * 1000, 2) if (p := percentile(slat, 99)) else None,
        "cmd": {},
    }
    for kind, vals in st.lat.items():
        vals.sort()
        p50, p99 = percentile(vals, 50) or 0.0, percentile(vals, 99) or 0.0
        out["cmd"][kind] = {
            "n": len(vals),
            "p50_ms": round(p50 * 1000, 3),
            "p99_ms": round(p99 * 1000, 3),
        }
    print(json.dumps(out), flush=True)
    ok = st.sessions_ok and not st.errors and not st.size_mismatch
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
