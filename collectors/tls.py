"""Inspect a server's TLS certificate chain: expiry of the leaf and of the earliest certificate, validity.

Python 3.11's ``ssl`` cannot return the chain a server presents, so :func:`handshake` makes its own
connection and drives a pyOpenSSL handshake over asyncio through memory BIOs (no thread, no blocking).
It verifies as a client would, against the same trust store (``certifi``'s bundle, or a ``ca_file``),
but a verify callback records OpenSSL's complaints instead of aborting, so a broken chain is still read.
:func:`assess` then judges the presented chain at a given time, in three parts:

``chain``
    OpenSSL built a path from the leaf to a trusted root with valid signatures and CA constraints;
    expiry is left out here (that is ``dates``).
``hostname``
    the leaf's subjectAltName covers the name connected to (RFC 6125: ``*`` only as the whole left-most
    label; an IP needs an IP entry; the subject's CN is ignored, as browsers do).
``dates``
    every presented certificate is within its validity period.

Certificates are read with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from collectors.checks import is_ip

PARTS = ("chain", "hostname", "dates")
_DATE_ERRORS = frozenset({9, 10, 11, 12})  # not yet valid / expired, for certificates and CRLs: see `dates`
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsupported certificate purpose",
    27: "certificate not trusted",
    28: "certificate rejected",
}
_READ_SIZE = 65536


@dataclass(frozen=True)
class Handshake:
    """What a TLS handshake showed: the presented chain (leaf first), OpenSSL's verify errors, the protocol."""

    certificates: tuple[x509.Certificate, ...]
    verify_errors: tuple[tuple[int, int], ...]
    """``(depth, OpenSSL X509_V_ERR code)`` of every complaint, in the order OpenSSL made them."""
    protocol: str


@dataclass(frozen=True)
class Assessment:
    """A presented chain judged at one moment."""

    leaf_expiry_seconds: float
    chain_expiry_seconds: float
    """Seconds until the earliest ``notAfter`` among the presented certificates (negative once past)."""
    valid: dict[str, bool]
    """``chain``, ``hostname``, ``dates``: see the module docstring."""
    problems: tuple[str, ...]
    """One line per invalid part, e.g. ``certificate expired on 2024-05-01 (CN=example.com)``."""
    issuer: str
    subject: str
    fingerprint: str
    """SHA-256 of the leaf, hex."""
    protocol: str
    """The TLS version negotiated, e.g. ``TLSv1.3``."""

    @property
    def ok(self) -> bool:
        return all(self.valid.values())


@functools.cache
def client_context(ca_file: str | None = None) -> SSL.Context:
    """A client context trusting ``ca_file`` (default: certifi's bundle, as httpx); built once per file."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(ca_file or certifi.where())
    context.set_verify(SSL.VERIFY_PEER, _record_verify_error)
    return context


def _record_verify_error(connection: SSL.Connection, _cert: Any, error: int, depth: int, ok: int) -> bool:
    if not ok:
        connection.get_app_data().append((depth, error))
    return True  # go on: a broken chain is still read and judged by `assess`


async def handshake(address: str, port: int, server_name: str, *, ca_file: str | None = None) -> Handshake:
    """Connect to ``address:port``, complete a TLS handshake for ``server_name`` and close.

    ``server_name`` is sent as SNI unless it is an IP address. Raises ``OSError`` (connection) or
    ``OpenSSL.SSL.Error`` (handshake); bound it with a timeout.
    """
    reader, writer = await asyncio.open_connection(address, port)
    try:
        errors: list[tuple[int, int]] = []
        connection = SSL.Connection(client_context(ca_file), None)  # None: memory BIOs, driven below
        connection.set_app_data(errors)
        if not is_ip(server_name):
            connection.set_tlsext_host_name(server_name.encode("idna"))
        connection.set_connect_state()
        await _drive(connection, reader, writer)
        chain = connection.get_peer_cert_chain(as_cryptography=True) or []
        return Handshake(tuple(chain), tuple(errors), connection.get_protocol_version_name())
    finally:
        writer.close()


async def _drive(connection: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            connection.do_handshake()
        except SSL.WantReadError:
            await _send_pending(connection, writer)
            data = await reader.read(_READ_SIZE)
            if not data:
                raise ConnectionError("the server closed the connection during the TLS handshake") from None
            connection.bio_write(data)
        else:
            await _send_pending(connection, writer)
            return


async def _send_pending(connection: SSL.Connection, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            writer.write(connection.bio_read(_READ_SIZE))
        except SSL.WantReadError:  # nothing left to send
            break
    await writer.drain()


def assess(shown: Handshake, server_name: str, now: datetime) -> Assessment:
    """Judge the chain ``shown`` for ``server_name`` at ``now`` (an aware datetime)."""
    if not shown.certificates:
        raise ValueError("the server presented no certificate")
    leaf = shown.certificates[0]
    earliest = min(shown.certificates, key=lambda cert: cert.not_valid_after_utc)
    chain_problems = _chain_problems(shown.verify_errors)
    date_problems = [_date_problem(cert, now) for cert in shown.certificates]
    dns_names, ips = subject_alt_names(leaf)
    hostname_ok = hostname_matches(server_name, dns_names, ips)
    problems = [f"untrusted chain: {', '.join(chain_problems)}"] if chain_problems else []
    problems += [p for p in date_problems if p]
    if not hostname_ok:
        problems.append(_hostname_problem(server_name, dns_names, ips))
    return Assessment(
        leaf_expiry_seconds=(leaf.not_valid_after_utc - now).total_seconds(),
        chain_expiry_seconds=(earliest.not_valid_after_utc - now).total_seconds(),
        valid={"chain": not chain_problems, "hostname": hostname_ok, "dates": not any(date_problems)},
        problems=tuple(problems),
        issuer=leaf.issuer.rfc4514_string(),
        subject=leaf.subject.rfc4514_string(),
        fingerprint=leaf.fingerprint(hashes.SHA256()).hex(),
        protocol=shown.protocol,
    )


def _chain_problems(errors: Sequence[tuple[int, int]]) -> list[str]:
    codes = [code for _, code in errors if code not in _DATE_ERRORS]
    return list(dict.fromkeys(_VERIFY_ERRORS.get(code, f"X509 verify error {code}") for code in codes))


def _date_problem(cert: x509.Certificate, now: datetime) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z ({common_name(cert)})"
    if now < cert.not_valid_before_utc:
        return f"certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}Z ({common_name(cert)})"
    return None


def _hostname_problem(server_name: str, dns_names: list[str], ips: list[str]) -> str:
    names = [*dns_names, *ips]
    if not names:
        return f"hostname mismatch: the certificate has no subjectAltName, so it is valid for no name ({server_name})"
    return f"hostname mismatch: {server_name} is not among {', '.join(names)}"


def common_name(cert: x509.Certificate) -> str:
    """``CN=…`` of the subject, or the whole subject when it has no common name."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={names[0].value!s}" if names else cert.subject.rfc4514_string()


def subject_alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses of a certificate's subjectAltName extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def hostname_matches(host: str, dns_names: Sequence[str], ips: Sequence[str] = ()) -> bool:
    """Whether a certificate for ``dns_names`` / ``ips`` is valid for ``host`` (RFC 6125, as browsers)."""
    host = host.strip("[]")
    if is_ip(host):
        address = ipaddress.ip_address(host)
        return any(_same_ip(address, ip) for ip in ips)
    return any(name_matches(pattern, host) for pattern in dns_names)


def _same_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def name_matches(pattern: str, host: str) -> bool:
    """Whether a certificate name ``pattern`` (maybe ``*.example.com``) covers ``host``; case-insensitive."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == host
    suffix = pattern[1:]  # ".example.com"
    if "*" in suffix or suffix.count(".") < 2:  # no partial wildcards, no `*.com`
        return False
    label, _, rest = host.partition(".")
    return bool(label) and f".{rest}" == suffix


__all__: Sequence[str] = [
    "PARTS",
    "Assessment",
    "Handshake",
    "assess",
    "client_context",
    "common_name",
    "handshake",
    "hostname_matches",
    "name_matches",
    "subject_alt_names",
]
