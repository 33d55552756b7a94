"""A real DNS resolver on loopback for tests: Debian's unbound.

`running_resolver(directory)` starts unbound on 127.0.0.1 on a free
port, answering from zone files it loads as auth-zones, and stops it
on exit. It resolves like a recursive resolver (CNAME chains are
chased) but never sends a packet off the machine:

- the root hints name one server, 127.0.0.2, which unbound is told
  never to query, so every name outside our zones is SERVFAIL at once;
- `slow.test.` is a stub zone whose only server is a UDP socket that
  this fixture holds open and never answers: lookups there time out.

The zones (TEST_ZONES) give MX, A, AAAA, null MX, CNAME, NODATA and
NXDOMAIN cases; tests may add zones of their own.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

_SOA = "@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n@ IN NS ns\n"

EXAMPLE_TEST = """\
ns IN A 127.0.0.1
@ IN MX 10 mx1
@ IN MX 20 mx2
mx1 IN A 127.0.0.1
mx2 IN AAAA ::1
mx3 IN A 127.0.0.3
two IN A 127.0.0.1
two IN AAAA ::1
; equal preferences: the order must vary (RFC 5321 5.1)
equal IN MX 10 a.equal
equal IN MX 10 b.equal
equal IN MX 10 c.equal
equal IN MX 5 first.equal
a.equal IN A 127.0.0.11
b.equal IN A 127.0.0.12
c.equal IN A 127.0.0.13
first.equal IN A 127.0.0.10
; no MX: the domain's own address is the implicit MX
implicit IN A 127.0.0.1
implicit IN AAAA ::1
; RFC 7505 null MX
nullmx IN MX 0 .
; CNAMEs: a domain that is an alias, and an MX that names an alias
alias IN CNAME mx1
cname IN CNAME @
mxalias IN MX 10 alias
; a name with no MX and no address (NODATA)
nodata IN TXT "no mail here"
; MX hosts that do not resolve
mxnx IN MX 10 missing
mxfail IN MX 10 host.fail.test.
mxhalf IN MX 10 host.fail.test.
mxhalf IN MX 20 mx3
; IDN: bücher.example.test in its A-label form
xn--bcher-kva IN MX 10 mx1
; two MX hosts on two loopback addresses, for failover tests
failover IN MX 10 down
failover IN MX 20 up
down IN A 127.0.0.2
up IN A 127.0.0.3
"""

TEST_ZONES: dict[str, str] = {"example.test": EXAMPLE_TEST}


@dataclass
class DnsServer:
    """A running unbound: point `dns_resolver` at `setting`."""

    address: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def setting(self) -> str:
        return f"{self.address}:{self.port}"


def free_udp_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _zone_file(directory: Path, zone: str, records: str) -> Path:
    path = directory / f"{zone}.zone"
    head = f"$ORIGIN {zone}.\n$TTL 300\n" + _SOA.format(zone=zone)
    path.write_text(head + records)
    return path


def _config(
    directory: Path, port: int, silent_port: int, zones: Mapping[str, str]
) -> str:
    hints = directory / "root.hints"
    hints.write_text(
        ". 3600000 IN NS a.root.invalid.\na.root.invalid. 3600000 IN A 127.0.0.2\n"
    )
    lines = [
        "server:",
        f"    interface: 127.0.0.1@{port}",
        "    so-reuseport: no",
        "    do-daemonize: no",
        '    username: ""',
        '    chroot: ""',
        f'    directory: "{directory}"',
        '    pidfile: ""',
        "    use-syslog: no",
        "    verbosity: 1",
        '    module-config: "iterator"',
        "    access-control: 127.0.0.0/8 allow",
        "    do-not-query-localhost: no",
        "    do-not-query-address: 127.0.0.2",
        f'    root-hints: "{hints}"',
        '    local-zone: "test." nodefault',
        "    cache-max-ttl: 0",
        "    cache-max-negative-ttl: 0",
        "remote-control:",
        "    control-enable: no",
        "stub-zone:",
        '    name: "slow.test."',
        f"    stub-addr: 127.0.0.1@{silent_port}",
    ]
    for zone, records in zones.items():
        path = _zone_file(directory, zone, records)
        lines += [
            "auth-zone:",
            f'    name: "{zone}."',
            f'    zonefile: "{path}"',
            "    for-downstream: no",
            "    for-upstream: yes",
            "    fallback-enabled: no",
        ]
    return "\n".join(lines) + "\n"


def _answers(port: int) -> bool:
    query = dns.message.make_query("example.test.", "SOA")
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
    except (TimeoutError, OSError, dns.exception.Timeout):
        return False
    return response.rcode() == dns.rcode.NOERROR


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
    # bounded: at most 100 probes of 0.2 s each
    for _ in range(100):
        if process.poll() is not None:
            return False
        if _answers(port):
            return True
    return False


@contextlib.contextmanager
def running_resolver(
    directory: Path, zones: Mapping[str, str] | None = None
) -> Iterator[DnsServer]:
    """Starts unbound serving `zones` (default TEST_ZONES); stops it
    (by its own pid) on exit."""
    zones = dict(TEST_ZONES if zones is None else zones)
    directory.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent_port = silent.getsockname()[1]
        server = _start(directory, silent_port, zones)
        try:
            yield server
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _start(directory: Path, silent_port: int, zones: Mapping[str, str]) -> DnsServer:
    # a free port can be taken between our probe and unbound's bind:
    # try a few, so-reuseport off makes a clash fail loudly
    for _attempt in range(5):
        port = free_udp_port()
        conf = directory / "unbound.conf"
        conf.write_text(_config(directory, port, silent_port, zones))
        log = (directory / "unbound.log").open("wb")
        process = subprocess.Popen(
            [UNBOUND, "-d", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if _wait_ready(process, port):
            return DnsServer("127.0.0.1", port, process, directory)
        process.terminate()
        process.wait(timeout=10)
    log_text = (directory / "unbound.log").read_text(errors="replace")
    raise RuntimeError(f"unbound did not start:\n{log_text}")
