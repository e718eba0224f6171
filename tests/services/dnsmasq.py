"""dnsmasq on 127.0.0.1 and a free port, serving a test zone from a private config (nothing in /etc).

    zone = Zone("qwq.test", hosts={"www": ["192.0.2.10", "2001:db8::10"]}, cnames={"alias": "www"},
                mx=[(10, "mail")], txt={"": ["v=spf1 -all"]})
    with Dnsmasq(zone, tmp_path) as server:
        server.nameserver            # "127.0.0.1:<port>"

Names in a zone are relative to its domain ("" is the domain itself). dnsmasq answers only for the zone:
``--no-resolv --no-hosts`` and ``local=/<domain>/`` make any other name in it NXDOMAIN and forward
nothing. The A/AAAA records live in a hosts file that :meth:`Dnsmasq.set_hosts` rewrites, followed by a
SIGHUP, so a test can change an answer while the server runs.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query

DNSMASQ = "dnsmasq"


@dataclass(frozen=True)
class Zone:
    """The records of a test zone; names relative to ``domain``."""

    domain: str
    hosts: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """name → addresses (A and AAAA)."""
    cnames: Mapping[str, str] = field(default_factory=dict)
    mx: Sequence[tuple[int, str]] = ()
    """(preference, exchange) of the domain itself."""
    txt: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def fqdn(self, name: str) -> str:
        return f"{name}.{self.domain}" if name else self.domain

    def config(self) -> list[str]:
        """dnsmasq config lines for everything but the host addresses."""
        lines = [f"cname={self.fqdn(alias)},{self.fqdn(target)}" for alias, target in self.cnames.items()]
        lines += [f"mx-host={self.domain},{self.fqdn(host)},{preference}" for preference, host in self.mx]
        for name, texts in self.txt.items():
            lines += [f'txt-record={self.fqdn(name)},"{text}"' for text in texts]
        return lines

    def hosts_file(self, hosts: Mapping[str, Sequence[str]] | None = None) -> str:
        entries = hosts if hosts is not None else self.hosts
        return "".join(f"{address} {self.fqdn(name)}\n" for name, addresses in entries.items() for address in addresses)


def free_udp_and_tcp_port() -> int:
    """A port on 127.0.0.1 free for both UDP and TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


class Dnsmasq:
    """A dnsmasq process serving ``zone``; its files live in ``directory``."""

    def __init__(self, zone: Zone, directory: Path) -> None:
        self.zone = zone
        self.directory = directory
        self.port = free_udp_and_tcp_port()
        self.nameserver = f"127.0.0.1:{self.port}"
        self._hosts = directory / "zone.hosts"
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which(DNSMASQ) is not None or Path("/usr/sbin/dnsmasq").exists()

    def start(self) -> Dnsmasq:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._hosts.write_text(self.zone.hosts_file())
        config = self.directory / "dnsmasq.conf"
        settings = [
            f"port={self.port}",
            "listen-address=127.0.0.1",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "no-negcache",
            "pid-file=",
            "user=root",
            f"addn-hosts={self._hosts}",
            f"local=/{self.zone.domain}/",
        ]
        config.write_text("\n".join(settings + self.zone.config()) + "\n")
        binary = shutil.which(DNSMASQ) or "/usr/sbin/dnsmasq"
        self._process = subprocess.Popen(
            [binary, "--keep-in-foreground", f"--conf-file={config}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_answering(self, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        query = dns.message.make_query(self.zone.domain, "SOA")
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"dnsmasq exited with {self._process.returncode}: {error}")
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except (dns.exception.Timeout, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"dnsmasq did not answer on port {self.port} within {seconds:g}s")

    def set_hosts(self, hosts: Mapping[str, Sequence[str]]) -> None:
        """Replace the A/AAAA records, make dnsmasq reread them (SIGHUP) and wait until it serves them."""
        self._hosts.write_text(self.zone.hosts_file(hosts))
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while any(self.addresses(name) != {str(ip_address(a)) for a in addresses} for name, addresses in hosts.items()):
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not pick up the new hosts file")
            time.sleep(0.05)

    def addresses(self, name: str) -> set[str]:
        """The A and AAAA answers for ``name`` (relative to the zone) right now."""
        found = set()
        for record_type in ("A", "AAAA"):
            query = dns.message.make_query(self.zone.fqdn(name), record_type)
            answer = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=1)
            found |= {str(ip_address(r.to_text())) for rrset in answer.answer for r in rrset}
        return found

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
