"""HTTP and HTTPS servers in threads on loopback, and a test CA that issues their certificates.

    ca = TestCA.create(tmp_path)                                    # a root CA, written as ca.pem
    soon = ca.issue("soon", ["localhost", "127.0.0.1"], days=5)     # leaf + key files, valid 5 more days
    with WebServer() as plain, WebServer(soon) as tls:
        plain.url("/json"), tls.url("/status/503")

Certificates are built with ``cryptography`` (ECDSA P-256, the extensions the web PKI expects), valid
from a day ago unless told otherwise: ``issue(..., days=-1)`` is an expired one, a wrong host name is
just other ``names``. ``ca.intermediate(...)`` is a CA signed by this one; a leaf it issues is served
with it, so chains longer than one certificate can be tested.

Routes (any method): ``/`` a small page; ``/status/<code>``; ``/json`` a fixed document (:data:`DOCUMENT`);
``/redirect/<n>`` n redirects, then 200; ``/slow?seconds=s``; ``/echo`` the request as JSON (method,
path, headers, body; also kept in :attr:`WebServer.received`); ``/big?bytes=n``.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PAGE = b"<html><body><h1>Hello from qwq's test server</h1><p>All systems nominal.</p></body></html>"
DOCUMENT = {"status": "ok", "db": {"up": True, "latency": 0.5}, "items": [{"name": "a"}, {"name": "b"}]}


# ---- certificates --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issued:
    """A leaf certificate written to disk: ``chain`` (leaf first, then intermediates) and its ``key``."""

    certificate: x509.Certificate
    chain: Path
    key: Path


@dataclass(frozen=True)
class TestCA:
    """A certificate authority for tests; its certificate is written to ``path`` (trust it with ``ca_file``)."""

    __test__ = False  # not a pytest test class

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    directory: Path
    served: tuple[x509.Certificate, ...] = ()
    """What a server sends after a leaf this CA issued: this CA's certificate if it is an intermediate, and
    the intermediates above it; nothing for a root."""

    @property
    def path(self) -> Path:
        return self.directory / f"{self.name}.pem"

    @classmethod
    def create(cls, directory: Path, name: str = "qwq-test-root", *, days: float = 3650) -> TestCA:
        """A self-signed root CA, valid from a day ago for ``days`` more days, written to ``directory``."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _build(_name(name), key.public_key(), _name(name), key, days=days)
        return cls(name, key, certificate, directory)._written(certificate)

    def intermediate(self, name: str, *, days: float = 365) -> TestCA:
        """A CA signed by this one, valid for ``days`` more days."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _build(_name(name), key.public_key(), self.certificate.subject, self.key, days=days)
        return TestCA(name, key, certificate, self.directory, (certificate, *self.served))._written(certificate)

    def issue(self, name: str, hosts: list[str], *, days: float = 90, not_before_days: float = -1) -> Issued:
        """A server certificate for ``hosts`` (DNS names or IPs), valid ``days`` more days (negative: expired).

        Its subject's common name is ``name``; pass ``hosts=[]`` for one without a subjectAltName.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = _build(
            _name(name),
            key.public_key(),
            self.certificate.subject,
            self.key,
            days=days,
            hosts=hosts,
            not_before_days=not_before_days,
        )
        chain, key_path = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        chain.write_bytes(b"".join(_pem(c) for c in (certificate, *self.served)))
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_path.write_bytes(private)
        return Issued(certificate, chain, key_path)

    def _written(self, certificate: x509.Certificate) -> TestCA:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(_pem(certificate))
        return self


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _build(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    days: float,
    hosts: list[str] | None = None,
    not_before_days: float = -1,
) -> x509.Certificate:
    """A CA certificate, or a server certificate for ``hosts`` when they are given (even empty)."""
    now = datetime.now(UTC)
    ca = hosts is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + timedelta(days=min(not_before_days, days - 1)))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # cert and CRL signing
        return builder.add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256())
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digital signature
    builder = builder.add_extension(usage, critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


# ---- servers -------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qwq-test"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = url.path.strip("/").split("/")
        route = parts[0]
        if route == "":
            self._send(200, PAGE, "text/html; charset=utf-8")
        elif route == "status" and len(parts) == 2 and parts[1].isdigit():
            self._send(int(parts[1]), f"status {parts[1]}".encode())
        elif route == "json":
            self._send(200, json.dumps(DOCUMENT).encode(), "application/json")
        elif route == "redirect" and len(parts) == 2 and parts[1].isdigit():
            left = int(parts[1])
            if left:
                self._send(302, b"", headers={"Location": f"/redirect/{left - 1}"})
            else:
                self._send(200, b"redirected")
        elif route == "slow":
            time.sleep(float(query.get("seconds", "1")))
            self._send(200, b"finally")
        elif route == "echo":
            echo = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body.decode()}
            self.server.received.append(echo)  # type: ignore[attr-defined]
            self._send(200, json.dumps(echo).encode(), "application/json")
        elif route == "big":
            self._send(200, b"x" * int(query.get("bytes", "1000000")))
        else:
            self._send(404, b"not found")

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: tests read results, not access logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # socketserver's 5 drops SYNs when a benchmark connects 100 times at once
    tls: ssl.SSLContext | None = None
    received: list[dict[str, Any]]

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is None:
            return sock, address
        # The handshake happens on the first read, in the request's own thread, not in the accept loop.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: clients that reject the certificate or hang up are what some tests are about."""


class WebServer:
    """An HTTP server (HTTPS with ``certificate``) on 127.0.0.1 and ``port`` (default a free one), in a thread."""

    def __init__(self, certificate: Issued | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self.received: list[dict[str, Any]] = []
        self._server.received = self.received
        """What ``/echo`` received, in order: method, path, headers, body."""
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certificate.chain, certificate.key)
            self._server.tls = context
        self.scheme = "https" if certificate else "http"
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"web-{self.port}", daemon=True
        )

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The URL of ``path`` on this server, addressed by ``host`` (a name for certificates: localhost)."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, forever if it never ran
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
