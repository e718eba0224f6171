"""A :class:`Store` that reads and writes through a running ``qwq up`` over HTTP.

Frames travel as Arrow IPC streams, so what comes back is exactly what the server's LocalStore returned.
Relative times (``since="1h"``) are resolved here, against this process's clock, before they are sent.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import httpx
import polars as pl

from qwq_core.api.formats import MEDIA_TYPES
from qwq_core.errors import (
    AuthError,
    NotFoundError,
    QueryError,
    QwqError,
    RemoteError,
    StoreError,
)
from qwq_core.model import Event, MetricInfo
from qwq_core.store import ingest
from qwq_core.store.base import QuerySpec, SQLParams, Store
from qwq_core.timeutil import DurationLike, TimeLike, as_utc, parse_duration, parse_time, utcnow

_ERRORS: dict[str, type[QwqError]] = {cls.__name__: cls for cls in (QueryError, NotFoundError, StoreError, AuthError)}
"""Errors raised again as themselves on this side; any other becomes a RemoteError."""


class RemoteStore(Store):
    """The store of the qwq server at ``url`` (e.g. ``http://127.0.0.1:8765``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": MEDIA_TYPES["arrow"]}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A JSON request to the server's API (``path`` under ``/api/v1``); the ``data`` of its answer.

        For the routes services add (alerts, silences, actions); errors become qwq's exceptions.
        """
        return self._request(method, path, **kwargs).json().get("data")

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, f"/api/v1{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach qwq at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> QwqError:
        try:
            body = response.json()["error"]
            kind, message = body["type"], body["message"]
        except (ValueError, KeyError, TypeError):
            return RemoteError(
                f"{self.url} answered {response.status_code}: {response.text[:200]}",
                status=response.status_code,
            )
        cls = _ERRORS.get(kind)
        if cls is None:
            return RemoteError(f"{self.url}: {message}", status=response.status_code)
        return cls(message)

    def _frame(self, method: str, path: str, **kwargs: Any) -> pl.DataFrame:
        return pl.read_ipc_stream(io.BytesIO(self._request(method, path, **kwargs).content))

    # ---- writing -------------------------------------------------------------------------------------
    def write(self, frame: pl.DataFrame) -> int:
        batch = ingest.normalise(frame)  # refuse bad frames here, before sending anything
        buffer = io.BytesIO()
        batch.write_ipc_stream(buffer)
        response = self._request(
            "POST", "/write", content=buffer.getvalue(), headers={"Content-Type": MEDIA_TYPES["arrow"]}
        )
        return int(response.json()["written"])

    def record(self, events: Iterable[Event]) -> None:
        body = [{**asdict(e), "attrs": dict(e.attrs), "ts": as_utc(e.ts).isoformat()} for e in events]
        if body:
            self._request("POST", "/events", json=body)

    def describe(self, metrics: Iterable[MetricInfo]) -> None:
        body = [asdict(info) for info in metrics]
        if body:
            self._request("POST", "/metadata", json=body)

    # ---- reading -------------------------------------------------------------------------------------
    def run_query(self, spec: QuerySpec) -> pl.DataFrame:
        params: dict[str, Any] = {
            "metric": str(spec.selector),
            "since": spec.since.isoformat(),
            "until": spec.until.isoformat(),
            "agg": spec.agg,
        }
        if spec.step is not None:
            params["step"] = spec.step.total_seconds()
        return self._frame("GET", "/query", params=params)

    def latest(
        self,
        metric: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        max_age: DurationLike = "5m",
    ) -> pl.DataFrame:
        params: dict[str, Any] = {
            "labels": [f"{k}={v}" for k, v in (labels or {}).items()],
            "max_age": parse_duration(max_age).total_seconds(),
        }
        if metric:
            params["metric"] = metric
        return self._frame("GET", "/latest", params=params)

    def series(self, pattern: str | None = None) -> pl.DataFrame:
        return self._frame("GET", "/series", params={"match": pattern} if pattern else None)

    def metrics(self, pattern: str | None = None) -> pl.DataFrame:
        return self._frame("GET", "/metrics", params={"match": pattern} if pattern else None)

    def events(
        self,
        *,
        since: TimeLike = "24h",
        until: TimeLike | None = None,
        kind: str | None = None,
        source: str | None = None,
        severity: str | None = None,
        limit: int = 1000,
    ) -> pl.DataFrame:
        now = utcnow()
        params = {
            "since": parse_time(since, now=now).isoformat(),
            "until": parse_time(until, now=now).isoformat(),
            "kind": kind,
            "source": source,
            "severity": severity,
            "limit": limit,
        }
        return self._frame("GET", "/events", params={k: v for k, v in params.items() if v is not None})

    def sql(self, query: str, params: SQLParams = None) -> pl.DataFrame:
        if isinstance(params, Mapping):
            raise QueryError("named SQL parameters are not supported over HTTP; pass a list")
        return self._frame("POST", "/sql", json={"query": query, "params": list(params) if params else None})

    def stats(self) -> dict[str, Any]:
        return dict(self.status()["store"])

    def status(self) -> dict[str, Any]:
        """The server's full status: store facts, collector states, writer counters."""
        result: dict[str, Any] = self._request("GET", "/status", headers={"Accept": "application/json"}).json()
        return result

    def health(self) -> dict[str, Any]:
        """The server's health answer (raises :class:`RemoteError` if it does not answer)."""
        result: dict[str, Any] = self._request("GET", "/health", headers={"Accept": "application/json"}).json()
        return result

    def close(self) -> None:
        self._client.close()
