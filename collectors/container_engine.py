"""Reaching a Docker engine: its URL and TLS settings, SDK clients that speak its API version, failure reasons.

The ``docker`` SDK's own ``version="auto"`` asks ``GET /version`` whenever a client is made, which some
engines take most of a second to answer; :class:`Engine` negotiates over ``GET /_ping`` instead, as the
docker CLI does. SDK errors are turned into short, stable reasons by :func:`describe` (stable, because a
``target.down`` event is emitted again whenever the reason changes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import requests
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.errors import APIError, DockerException
from docker.tls import TLSConfig
from docker.utils import kwargs_from_env, version_lt

from collectors.container_events import EventStream

DEFAULT_URL = "unix:///var/run/docker.sock"
SCHEMES = ("unix", "tcp", "http", "https", "ssh", "npipe")
ENGINE_ERRORS = (DockerException, requests.RequestException, OSError)
"""What the SDK raises when the engine is unreachable, slow, or answers with an error."""
CERTIFICATES = ("ca.pem", "cert.pem", "key.pem")


class Engine:
    """One engine: ``url`` (None: the DOCKER_* environment, as the docker CLI reads it) and optional TLS."""

    def __init__(self, url: str | None, cert_path: Path | None = None, max_pool_size: int = 10) -> None:
        self._kwargs = _client_kwargs(url, cert_path)
        self._max_pool_size = max_pool_size
        base_url = str(self._kwargs.get("base_url") or DEFAULT_URL)
        self.url = "unix://" + base_url.removeprefix("http+unix://") if base_url.startswith("http+unix") else base_url
        """The engine's URL as users write it."""

    def client(self, timeout: float) -> docker.APIClient:
        """A low-level SDK client speaking the engine's API version; raises one of :data:`ENGINE_ERRORS`."""
        version = self.negotiate(timeout)
        return docker.APIClient(version=version, timeout=timeout, max_pool_size=self._max_pool_size, **self._kwargs)

    def negotiate(self, timeout: float) -> str:
        """The API version to speak: the engine's (the ``Api-Version`` of ``/_ping``), at most the SDK's."""
        with docker.APIClient(version=MINIMUM_DOCKER_API_VERSION, timeout=timeout, **self._kwargs) as probe:
            response = probe.get(f"{probe.base_url}/_ping", timeout=timeout)
        server = response.headers.get("Api-Version")
        if not response.ok or not server:
            return "auto"  # let the SDK ask /version
        return server if version_lt(server, DEFAULT_DOCKER_API_VERSION) else DEFAULT_DOCKER_API_VERSION

    def events(self, since: str, *, timeout: float) -> EventStream:
        """The container event stream from ``since`` on; ``timeout`` bounds connecting, the stream has none."""
        api = self.client(timeout)
        try:
            return _ClientStream(api, api.events(since=since, filters={"type": ["container"]}, decode=True))
        except BaseException:
            api.close()
            raise


class _ClientStream:
    """An event stream that closes its own client (and so its connection pool) when closed."""

    def __init__(self, api: docker.APIClient, stream: EventStream) -> None:
        self._api = api
        self._stream = stream

    def __iter__(self) -> Any:
        return iter(self._stream)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._api.close()


def _client_kwargs(url: str | None, cert_path: Path | None) -> dict[str, Any]:
    """``base_url`` and ``tls`` for the SDK."""
    if url is None:
        return dict(kwargs_from_env())
    kwargs: dict[str, Any] = {"base_url": url}
    if cert_path is not None:
        cert, key, ca = (str(cert_path / name) for name in ("cert.pem", "key.pem", "ca.pem"))
        kwargs["tls"] = TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
    return kwargs


def check_url(url: str | None) -> str | None:
    """``url`` if the SDK can speak to it; raises ValueError naming the schemes it can."""
    if url is not None and urlsplit(url).scheme not in SCHEMES:
        raise ValueError(f"unsupported URL {url!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")
    return url


def check_certificates(path: Path | None) -> Path | None:
    """``path`` if it holds the three PEM files TLS needs; raises ValueError naming the missing ones."""
    missing = [name for name in CERTIFICATES if path is not None and not (path / name).is_file()]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return path


def describe(exc: BaseException, timeout: float) -> str:
    """A short, stable reason for an engine failure: a timeout, the root OS error, or the engine's message."""
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return f"timed out after {timeout:g}s"
    root = _root_os_error(exc)
    if root is not None:
        return f"{type(root).__name__}: {root.strerror or root}"
    if isinstance(exc, APIError):
        return f"HTTP {exc.status_code}: {exc.explanation or exc}"[:300]
    text = str(exc).strip()
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


def _root_os_error(exc: BaseException) -> OSError | None:
    """The OS error under ``exc`` (connection refused, no such socket), through causes, contexts and args."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        pending += [current.__cause__, current.__context__, *current.args]
    return None


__all__: Sequence[str] = ["DEFAULT_URL", "ENGINE_ERRORS", "Engine", "check_certificates", "check_url", "describe"]
