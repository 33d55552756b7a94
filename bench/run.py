#!/usr/bin/env python3
"""Benchmark Roost against postfix and dovecot in one run, on loopback.

    sudo python3 bench/run.py            # the full matrix (about 10 minutes)
    sudo python3 bench/run.py --quick    # a short run (about 2 minutes)

Starts, under a fresh temporary directory: postfix's smtp-sink (the relay
target), a private postfix instance and a Roost instance for SMTP, then a
private dovecot and a Roost instance for POP3/IMAP, and drives each pair
with the same load generators from ../shared/bench (smtp_load.py,
pop3_load.py, imap_load.py; ROOST_SHARED_BENCH overrides the path).
Everything listens on 127.0.0.1 ports picked free at start, and everything
started is stopped at the end, on errors and on Ctrl-C too.

Prints a Markdown table and writes one JSON object per line to
bench/results/<run id>.jsonl (a "meta" line, then one "run" line per load
run with the load generator's whole JSON output).  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
from servers import (  # noqa: E402
    LOOPBACK,
    BenchError,
    Dovecot,
    Postfix,
    Roost,
    SmtpSink,
    chown_tree,
    empty_maildir,
    tool_version,
)

PASSWORD = "benchpass"
LOCAL_RCPT = "bench@example.test"
RELAY_RCPT = "bench@relay.example"  # not local: relayed to relayhost


@dataclass
class Plan:
    messages: int = 1000
    sizes: list[int] = field(default_factory=lambda: [2048, 102400])
    concurrency: list[int] = field(default_factory=lambda: [1, 10, 50])
    relay_sizes: list[int] = field(default_factory=lambda: [2048, 102400])
    relay_concurrency: list[int] = field(default_factory=lambda: [1, 10, 50])
    fixture_count: int = 1000
    fixture_size: int = 5120
    # clients -> sessions
    pop3: dict[int, int] = field(default_factory=lambda: {1: 5, 10: 30})
    imap: dict[int, int] = field(default_factory=lambda: {1: 30, 10: 100})
    reps: int = 1
    max_time: float = 120.0
    e2e_timeout: float = 120.0
    quiet_pct: float = 15.0
    quiet_wait: float = 10.0

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            messages=200,
            concurrency=[1, 10],
            relay_sizes=[2048],
            relay_concurrency=[10],
            pop3={1: 2, 10: 10},
            imap={1: 5, 10: 20},
            max_time=60.0,
            e2e_timeout=60.0,
            quiet_wait=5.0,
        )

    def text(self) -> str:
        return (
            f"SMTP n={self.messages} sizes={self.sizes} c={self.concurrency}; "
            f"relay sizes={self.relay_sizes} c={self.relay_concurrency}; "
            f"mailbox {self.fixture_count} x {self.fixture_size} B; "
            f"POP3 clients:sessions={self.pop3}; IMAP clients:sessions={self.imap}; "
            f"{self.reps} repetition(s)"
        )


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def pairs(text: str) -> dict[int, int]:
    """ "1:5,10:30" -> {1: 5, 10: 30}"""
    out = {}
    for item in text.split(","):
        clients, _, sessions = item.partition(":")
        out[int(clients)] = int(sessions or clients)
    return out


# ---------------------------------------------------------------- the run


class Run:
    """One benchmark run: its servers, its results file, its records."""

    def __init__(self, args: argparse.Namespace, plan: Plan, shared: Path) -> None:
        self.args = args
        self.plan = plan
        self.shared = shared
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        base = Path(args.workdir) if args.workdir else None
        self.tmp = Path(tempfile.mkdtemp(prefix="roost-bench-", dir=base))
        # local(8) and dovecot run mail as an unprivileged user: the path
        # down to each Maildir must be searchable for it
        self.tmp.chmod(0o755)
        results = Path(args.results) if args.results else BENCH / "results"
        results.mkdir(parents=True, exist_ok=True)
        self.out_path = results / f"{self.run_id}.jsonl"
        self.records: list[dict[str, Any]] = []
        self.running: list[Any] = []
        benchenv = self._import_shared("benchenv")
        self.foreign = benchenv.ForeignCPU(self._our_pids)

    def _import_shared(self, name: str) -> Any:
        if str(self.shared) not in sys.path:
            sys.path.append(str(self.shared))
        return importlib.import_module(name)

    def _our_pids(self) -> set[int]:
        pids = {os.getpid()}
        for server in self.running:
            pids |= server.pids
        return pids

    def record(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        with open(self.out_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def note(self, text: str) -> None:
        print(f"note: {text}", file=sys.stderr, flush=True)
        self.record({"type": "note", "text": text})

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def started(self, server: Any) -> Iterator[Any]:
        """Start server; stop it when the block ends, however it ends."""
        self.running.append(server)
        try:
            self.log(f"starting {server.name} in {getattr(server, 'root', '-')}")
            server.start()
            if isinstance(server, Roost):
                # other work lands while a run goes on: say what ran
                self.note(f"{server.root.name}: Roost at {git_describe()}")
            yield server
        finally:
            self.log(f"stopping {server.name}")
            try:
                server.stop()
            finally:
                self.running.remove(server)

    def stop_all(self) -> None:
        for server in reversed(list(self.running)):
            with contextlib.suppress(Exception):
                server.stop()
        self.running.clear()

    # ------------------------------------------------------------ meta

    def meta(self) -> None:
        cpu_model = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        mem_gb = 0.0
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
        fs = "unknown"
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["df", "-T", str(self.tmp)], capture_output=True, text=True, timeout=10
            )
            fs = out.stdout.splitlines()[-1].split()[1]
        commit = git_describe()
        machine = {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model,
            "mem_gb": mem_gb,
            "kernel": platform.release(),
            "fs": fs,
            "workdir": str(self.tmp),
            "python": platform.python_version(),
            "postfix": "postfix " + tool_version(["postconf", "-h", "mail_version"]),
            "dovecot": tool_version(["dovecot", "--version"]),
            "roost": commit or "unknown",
            "hostname": platform.node(),
        }
        self.record(
            {
                "type": "meta",
                "run_id": self.run_id,
                "started": time.strftime("%Y-%m-%d %H:%M %Z"),
                "machine": machine,
                "plan": asdict(self.plan),
                "plan_text": self.plan.text(),
                "shared_bench": str(self.shared),
                "argv": sys.argv[1:],
            }
        )

    # ------------------------------------------------------------ one load run

    def gate(self) -> float | None:
        """Wait (bounded) for the machine to be quiet; foreign CPU % before."""
        pct, _, _ = self.foreign.wait_quiet(
            self.plan.quiet_pct, 1.0, self.plan.quiet_wait
        )
        return pct  # type: ignore[no-any-return]

    def load(
        self, cmd: list[str], timeout: float
    ) -> tuple[dict[str, Any], int, float, float]:
        """Run one load generator; (its JSON, exit code, t0, t1) in monotonic time."""
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        t1 = time.monotonic()
        result: dict[str, Any] = {}
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("{"):
                result = json.loads(line)
                break
        if not result:
            result = {"errors": {"no_json_output": 1}, "stderr": proc.stderr[-2000:]}
        return result, proc.returncode, t0, t1

    def measured(
        self,
        suite: str,
        server: str,
        case: dict[str, Any],
        rep: int,
        cmd: list[str],
        timeout: float,
        after: Any = None,
    ) -> dict[str, Any]:
        quiet_before = self.gate()
        s0 = self.foreign.snapshot()
        result, rc, t0, t1 = self.load(cmd, timeout)
        if after is not None:
            after(result, t0)
        foreign = self.foreign.percent(s0, self.foreign.snapshot())
        rec = {
            "type": "run",
            "suite": suite,
            "server": server,
            "case": case,
            "rep": rep,
            "time": time.strftime("%H:%M:%S"),
            "exit": rc,
            "foreign_cpu_pct": foreign,
            "foreign_cpu_pct_before": quiet_before,
            "disturbed": foreign is not None and foreign > self.plan.quiet_pct,
            "result": result,
        }
        self.record(rec)
        self.log(
            f"  {suite} {server} {case} -> {summary(suite, result)}"
            + (f"  (errors: {result['errors']})" if result.get("errors") else "")
        )
        return rec

    def py(self, script: str) -> list[str]:
        return [sys.executable, str(self.shared / script)]

    # ------------------------------------------------------------ SMTP

    def smtp_suites(self, suites: set[str]) -> None:
        p = self.plan
        sink = SmtpSink() if "relay" in suites else None
        with contextlib.ExitStack() as stack:
            if sink is not None:
                stack.enter_context(self.started(sink))
            relay_port = sink.port if sink else None
            postfix = Postfix(self.tmp / "postfix", relay_port=relay_port)
            postfix.write_config()
            roost = Roost(self.tmp / "roost-smtp", smtp=True, relay_port=relay_port)
            roost.write_config({"bench": "{PLAIN}" + PASSWORD})
            stack.enter_context(self.started(postfix))
            stack.enter_context(self.started(roost))
            servers: list[Any] = [postfix, roost]

            if "smtp" in suites:
                self.log("== SMTP to Maildir")
                for rep in range(p.reps):
                    for size in p.sizes:
                        for conc in p.concurrency:
                            for srv in order(servers, rep):
                                self.smtp_case(srv, size, conc, rep)
            if sink is not None:
                self.log("== relay to smtp-sink")
                for rep in range(p.reps):
                    for size in p.relay_sizes:
                        for conc in p.relay_concurrency:
                            for srv in order(servers, rep):
                                self.relay_case(srv, sink, size, conc, rep)

    def smtp_cmd(self, port: int, size: int, conc: int, rcpt: str) -> list[str]:
        p = self.plan
        return self.py("smtp_load.py") + [
            "--host", LOOPBACK, "--port", str(port),
            "-n", str(p.messages), "-c", str(conc), "-m", "1", "-s", str(size),
            "--from", "loadgen@example.test", "--to", rcpt,
            "--max-time", str(p.max_time), "--timeout", "30", "--json",
        ]  # fmt: skip

    def smtp_case(self, srv: Any, size: int, conc: int, rep: int) -> None:
        p = self.plan
        maildir = srv.maildir("bench")
        empty_maildir(maildir)
        cmd = self.smtp_cmd(srv.smtp_port, size, conc, LOCAL_RCPT) + [
            "--maildir", str(maildir), "--e2e-timeout", str(p.e2e_timeout),
            "--label", f"{srv.name} smtp",
        ]  # fmt: skip
        case = {"size": size, "concurrency": conc, "messages": p.messages}
        self.measured("smtp", srv.name, case, rep, cmd, p.max_time + p.e2e_timeout + 60)
        empty_maildir(maildir)

    def relay_case(
        self, srv: Any, sink: SmtpSink, size: int, conc: int, rep: int
    ) -> None:
        p = self.plan
        before = sink.count
        cmd = self.smtp_cmd(srv.smtp_port, size, conc, RELAY_RCPT) + [
            "--label", f"{srv.name} relay",
        ]  # fmt: skip

        def count_relayed(result: dict[str, Any], t0: float) -> None:
            # the load generator's clock starts a little after t0 (its
            # interpreter start-up, the same for both servers)
            accepted = int(result.get("accepted") or 0)
            result["relayed_at_accept_end"] = sink.count - before
            done = sink.wait_count(before + accepted, time.monotonic() + p.e2e_timeout)
            result["relayed"] = sink.count - before
            result["relay_complete"] = done is not None
            if done is not None and accepted:
                result["relay_wall_s"] = round(done - t0, 4)
                result["relay_msgs_per_s"] = round(accepted / (done - t0), 1)

        case = {"size": size, "concurrency": conc, "messages": p.messages}
        self.measured(
            "relay", srv.name, case, rep, cmd, p.max_time + 60, after=count_relayed
        )

    # ------------------------------------------------------------ POP3 / IMAP

    def mail_suites(self, suites: set[str]) -> None:
        p = self.plan
        nboxes = max([1, *p.pop3])
        users = [f"mbox1k-{i:02d}" for i in range(nboxes)]
        fixture = self.tmp / "fixture" / "Maildir"
        self.log(
            f"== making the fixture mailbox ({p.fixture_count} x {p.fixture_size} B)"
        )
        subprocess.run(
            self.py("make_maildir.py")
            + [
                "--dir",
                str(fixture),
                "--count",
                str(p.fixture_count),
                "--size",
                str(p.fixture_size),
            ],  # fmt: skip
            check=True,
            capture_output=True,
            timeout=300,
        )
        password = {u: "{PLAIN}" + PASSWORD for u in users}
        dovecot = Dovecot(self.tmp / "dovecot")
        dovecot.write_config(password)
        roost = Roost(self.tmp / "roost-mail", mail=True)
        roost.write_config(password)
        for srv in (dovecot, roost):
            for u in users:
                box = srv.maildir(u)
                shutil.rmtree(box, ignore_errors=True)
                shutil.copytree(fixture, box)
        chown_tree(dovecot.home, "nobody")

        with contextlib.ExitStack() as stack:
            stack.enter_context(self.started(dovecot))
            stack.enter_context(self.started(roost))
            servers: list[Any] = [dovecot, roost]
            # untimed first sessions: each server builds its index/cache
            for srv in servers:
                self.warm_up(srv, users)
            if "pop3" in suites:
                self.log("== POP3")
                for rep in range(p.reps):
                    for clients, sessions in p.pop3.items():
                        for srv in order(servers, rep):
                            self.pop3_case(srv, users[:clients], sessions, rep)
            if "imap" in suites:
                self.log("== IMAP")
                for rep in range(p.reps):
                    for clients, sessions in p.imap.items():
                        for srv in order(servers, rep):
                            self.imap_case(srv, users[0], clients, sessions, rep)

    def pop3_cmd(self, srv: Any, users: list[str], sessions: int) -> list[str]:
        common = ["--host", LOOPBACK, "--port", str(srv.pop3_port),
                  "--password", PASSWORD,
                  "--sessions", str(sessions), "--max-time", str(self.plan.max_time),
                  "--label", f"{srv.name} pop3"]  # fmt: skip
        if len(users) == 1:
            return (
                self.py("pop3_load.py")
                + common
                + ["--user", users[0], "-c", "1", "--json"]
            )
        return [
            sys.executable, str(BENCH / "pop3_multi.py"), "--shared", str(self.shared),
            "--users", ",".join(users),
        ] + common  # fmt: skip

    def imap_cmd(self, srv: Any, user: str, clients: int, sessions: int) -> list[str]:
        return self.py("imap_load.py") + [
            "--host", LOOPBACK, "--port", str(srv.imap_port), "--user", user,
            "--password", PASSWORD, "-c", str(clients), "--sessions", str(sessions),
            "--reset-flags", "--max-time", str(self.plan.max_time), "--json",
            "--label", f"{srv.name} imap",
        ]  # fmt: skip

    def warm_up(self, srv: Any, users: list[str]) -> None:
        timeout = self.plan.max_time + 60
        for cmd in (
            self.pop3_cmd(srv, users, len(users)),
            self.imap_cmd(srv, users[0], 1, 1),
        ):
            result, rc, _, _ = self.load(cmd, timeout)
            self.record(
                {"type": "warmup", "server": srv.name, "exit": rc, "result": result}
            )
            if result.get("errors"):
                self.note(f"{srv.name} warm-up saw errors: {result['errors']}")

    def pop3_case(self, srv: Any, users: list[str], sessions: int, rep: int) -> None:
        case = {"clients": len(users), "mailboxes": len(users), "sessions": sessions}
        cmd = self.pop3_cmd(srv, users, sessions)
        self.measured("pop3", srv.name, case, rep, cmd, self.plan.max_time + 60)

    def imap_case(
        self, srv: Any, user: str, clients: int, sessions: int, rep: int
    ) -> None:
        case = {"clients": clients, "sessions": sessions}
        cmd = self.imap_cmd(srv, user, clients, sessions)
        self.measured("imap", srv.name, case, rep, cmd, self.plan.max_time + 60)


def git_describe() -> str:
    """The repository's commit, "-dirty" when the tree has changes."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout.strip() or "unknown"


def order(servers: list[Any], rep: int) -> list[Any]:
    """Reference first on even repetitions, Roost first on odd ones."""
    return servers if rep % 2 == 0 else list(reversed(servers))


def summary(suite: str, r: dict[str, Any]) -> str:
    if suite == "smtp":
        return f"accept {r.get('accept_msgs_per_s')}/s, e2e {r.get('e2e_msgs_per_s')}/s"
    if suite == "relay":
        relayed = r.get("relay_msgs_per_s")
        return f"accept {r.get('accept_msgs_per_s')}/s, relayed {relayed}/s"
    if suite == "pop3":
        return f"{r.get('sessions_per_s')} sessions/s, {r.get('retr_per_s')} msgs/s"
    return f"{r.get('ops_per_s')} ops/s, {r.get('sessions_per_s')} sessions/s"


def check_tools() -> None:
    missing = [
        t
        for t in ("postfix", "postalias", "smtp-sink", "dovecot")
        if not shutil.which(t)
    ]
    if missing:
        raise BenchError(
            "missing: "
            + ", ".join(missing)
            + " (apt-get install postfix dovecot-imapd dovecot-pop3d)"
        )
    if os.geteuid() != 0:
        raise BenchError("run as root: postfix and dovecot instances need it")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a short run")
    ap.add_argument(
        "--suites",
        default="smtp,relay,pop3,imap",
        help="comma-separated subset of smtp,relay,pop3,imap",
    )
    ap.add_argument("-n", "--messages", type=int, help="SMTP messages per run")
    ap.add_argument(
        "--sizes", type=int_list, help="SMTP message sizes, bytes (2048,102400)"
    )
    ap.add_argument("--concurrency", type=int_list, help="SMTP sessions (1,10,50)")
    ap.add_argument("--relay-sizes", type=int_list)
    ap.add_argument("--relay-concurrency", type=int_list)
    ap.add_argument("--pop3", type=pairs, help="clients:sessions list, e.g. 1:5,10:30")
    ap.add_argument(
        "--imap", type=pairs, help="clients:sessions list, e.g. 1:30,10:100"
    )
    ap.add_argument("--reps", type=int, help="repetitions of the whole matrix")
    ap.add_argument("--max-time", type=float, help="bound on each load run, seconds")
    ap.add_argument(
        "--quiet-pct",
        type=float,
        help="wait until other processes use less CPU than this (%% of machine)",
    )
    ap.add_argument("--quiet-wait", type=float, help="longest wait for that, seconds")
    ap.add_argument(
        "--workdir", help="parent of the temporary directory (default: $TMPDIR)"
    )
    ap.add_argument(
        "--results", help="directory for the JSON lines (default bench/results)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--markdown", help="also write the Markdown tables to this file")
    ap.add_argument("--shared", help="the shared bench directory (ROOST_SHARED_BENCH)")
    return ap.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan.quick() if args.quick else Plan()
    for name in ("messages", "sizes", "concurrency", "relay_sizes", "relay_concurrency",
                 "pop3", "imap", "reps", "max_time", "quiet_pct",
                 "quiet_wait"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(plan, name, value)
    if args.max_time is not None:
        plan.e2e_timeout = args.max_time
    if plan.messages < 1 or plan.reps < 1 or plan.max_time <= 0:
        raise BenchError("messages, reps and max-time must be positive")
    return plan


def shared_dir(args: argparse.Namespace) -> Path:
    text = (
        args.shared
        or os.environ.get("ROOST_SHARED_BENCH")
        or str(REPO / ".." / "shared" / "bench")
    )
    path = Path(text).resolve()
    for script in (
        "smtp_load.py",
        "pop3_load.py",
        "imap_load.py",
        "make_maildir.py",
        "benchenv.py",
    ):
        if not (path / script).is_file():
            raise BenchError(f"{path / script} not found (set ROOST_SHARED_BENCH)")
    return path


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = make_plan(args)
        suites = {s.strip() for s in args.suites.split(",") if s.strip()}
        unknown = suites - {"smtp", "relay", "pop3", "imap"}
        if unknown:
            raise BenchError(f"unknown suites: {', '.join(sorted(unknown))}")
        shared = shared_dir(args)
        check_tools()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    # SIGINT too: a shell without job control starts background jobs
    # with it ignored, and Ctrl-C must still stop everything
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    run = Run(args, plan, shared)
    status = 0
    try:
        run.meta()
        run.log(
            f"run {run.run_id}: {plan.text()}\n"
            f"  work dir {run.tmp}\n  results {run.out_path}"
        )
        if suites & {"smtp", "relay"}:
            run.smtp_suites(suites)
        if suites & {"pop3", "imap"}:
            run.mail_suites(suites)
    except KeyboardInterrupt:
        run.note("interrupted: the run is incomplete")
        status = 130
    except (BenchError, subprocess.SubprocessError, OSError) as exc:
        run.note(f"failed: {exc}")
        status = 1
    finally:
        run.stop_all()
        if args.keep or status:
            run.log(f"kept {run.tmp}")
        else:
            shutil.rmtree(run.tmp, ignore_errors=True)
    text = report.markdown(run.records)
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    run.log(f"results: {run.out_path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
