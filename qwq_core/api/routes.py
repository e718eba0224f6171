"""REST API v1: the :class:`~qwq_core.store.Store` methods over HTTP (OpenAPI at ``/docs``).

Tables come back as JSON ``{"data": [rows]}`` or, by ``Accept`` header or ``?format=``, as Arrow IPC,
Parquet or CSV. Errors are ``{"error": {"type", "message"}}`` with the status of
:func:`qwq_core.errors.http_status`. Authentication is :mod:`qwq_core.api.auth`'s, around the whole app.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import polars as pl
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, BaseModel, Field

from qwq_core import __version__
from qwq_core.api.formats import FRAME_RESPONSES, MEDIA_TYPES, decode, encode, negotiate
from qwq_core.errors import QueryError
from qwq_core.model import Event, MetricInfo, MetricType, Severity
from qwq_core.selectors import parse_label_filters
from qwq_core.store.base import Store
from qwq_core.store.tiers import Agg
from qwq_core.timeutil import parse_time, utcnow

FormatParam = Annotated[
    Literal["json", "arrow", "parquet", "csv"] | None,
    Query(description="response format; overrides the Accept header"),
]


def store_of(request: Request) -> Store:
    """The store the app serves."""
    store: Store = request.app.state.store
    return store


def respond(frame: pl.DataFrame, request: Request, fmt: str | None) -> Response:
    """Answer with ``frame`` in the negotiated format."""
    chosen = negotiate(request.headers.get("accept"), fmt)
    return Response(encode(frame, chosen), media_type=MEDIA_TYPES[chosen])


class Health(BaseModel):
    """Liveness of the server."""

    status: Literal["ok"] = "ok"
    version: str
    uptime_seconds: float
    store: str


class SQLRequest(BaseModel):
    """One read-only SQL statement and its positional parameters."""

    query: str = Field(examples=["SELECT name, count(*) AS n FROM series GROUP BY name ORDER BY n DESC"])
    params: list[Any] | None = None


class EventIn(BaseModel):
    """An event to record; without ``ts`` it happened now."""

    kind: str
    message: str
    source: str = "api"
    severity: Severity = "info"
    attrs: dict[str, Any] = Field(default_factory=dict)
    ts: AwareDatetime | None = None


class MetricIn(BaseModel):
    """Metadata of one metric name."""

    name: str
    type: MetricType = "gauge"
    unit: str = ""
    help: str = ""


class Written(BaseModel):
    """How many samples (or events, or metric descriptions) were stored."""

    written: int


router = APIRouter(prefix="/api/v1")


@router.get("/health", tags=["server"], response_model=Health)
def health(request: Request) -> Health:
    """Liveness: answers as soon as the server is up."""
    state = request.app.state
    return Health(version=__version__, uptime_seconds=time.time() - state.started, store=state.store_name)


@router.get("/status", tags=["server"])
def status(request: Request, store: Annotated[Store, Depends(store_of)]) -> dict[str, Any]:
    """Store facts, collector states and writer counters."""
    runtime = request.app.state.runtime
    return {
        "version": __version__,
        "store": store.stats(),
        **(runtime.snapshot() if runtime is not None else {"collectors": [], "writer": None}),
    }


@router.get("/query", responses=FRAME_RESPONSES, tags=["data"])
def query(
    request: Request,
    store: Annotated[Store, Depends(store_of)],
    metric: Annotated[str, Query(description='name or selector, e.g. host_cpu_usage_ratio{cpu="total"}')],
    labels: Annotated[list[str], Query(description="equality filters name=value (repeatable)")] = [],  # noqa: B006
    since: Annotated[str, Query(description="duration ago (1h), ISO 8601 time or Unix seconds")] = "1h",
    until: Annotated[str | None, Query(description="default: now")] = None,
    step: Annotated[str | None, Query(description="bucket width (1m, 1h); omit for raw samples")] = None,
    agg: Annotated[Agg, Query(description="aggregation per bucket; rate = per-second counter rate")] = "avg",
    format: FormatParam = None,
) -> Response:
    """Samples of the matching series: ``ts, value, name`` and one column per label."""
    frame = store.query(metric, labels=parse_label_filters(labels), since=since, until=until, step=step, agg=agg)
    return respond(frame, request, format)


@router.get("/latest", responses=FRAME_RESPONSES, tags=["data"])
def latest(
    request: Request,
    store: Annotated[Store, Depends(store_of)],
    metric: str | None = None,
    labels: Annotated[list[str], Query()] = [],  # noqa: B006
    max_age: str = "5m",
    format: FormatParam = None,
) -> Response:
    """The newest sample of each matching series seen within ``max_age``."""
    return respond(store.latest(metric, labels=parse_label_filters(labels), max_age=max_age), request, format)


@router.get("/series", responses=FRAME_RESPONSES, tags=["data"])
def series(
    request: Request,
    store: Annotated[Store, Depends(store_of)],
    match: Annotated[str | None, Query(description="selector or name glob")] = None,
    format: FormatParam = None,
) -> Response:
    """Known series: ``series_id, name`` and one column per label."""
    return respond(store.series(match), request, format)


@router.get("/metrics", responses=FRAME_RESPONSES, tags=["data"])
def metrics(
    request: Request,
    store: Annotated[Store, Depends(store_of)],
    match: Annotated[str | None, Query(description="metric name glob")] = None,
    format: FormatParam = None,
) -> Response:
    """Metric metadata: ``name, type, unit, help, series``."""
    return respond(store.metrics(match), request, format)


@router.get("/events", responses=FRAME_RESPONSES, tags=["events"])
def events(
    request: Request,
    store: Annotated[Store, Depends(store_of)],
    since: str = "24h",
    until: str | None = None,
    kind: Annotated[str | None, Query(description="glob, e.g. collector.*")] = None,
    source: str | None = None,
    severity: str | None = None,
    limit: Annotated[int, Query(ge=0)] = 1000,
    format: FormatParam = None,
) -> Response:
    """Events, newest first."""
    frame = store.events(since=since, until=until, kind=kind, source=source, severity=severity, limit=limit)
    return respond(frame, request, format)


@router.post("/events", response_model=Written, tags=["events"])
def record_events(store: Annotated[Store, Depends(store_of)], body: list[EventIn]) -> Written:
    """Record events."""
    store.record(Event(**item.model_dump(exclude_none=True)) for item in body)
    return Written(written=len(body))


@router.post("/sql", responses=FRAME_RESPONSES, tags=["data"])
def sql(
    request: Request, store: Annotated[Store, Depends(store_of)], body: SQLRequest, format: FormatParam = None
) -> Response:
    """Run one read-only SELECT over the store's tables."""
    return respond(store.sql(body.query, body.params), request, format)


@router.post(
    "/write",
    response_model=Written,
    tags=["data"],
    openapi_extra={
        "requestBody": {
            "description": "Samples: Arrow IPC stream, Parquet, CSV, or JSON rows — each row has name, ts (ISO 8601 "
            "or Unix seconds), value, and one string field per label (flat, not a nested labels object).",
            "content": {
                "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def write(request: Request, store: Annotated[Store, Depends(store_of)]) -> Written:
    """Append samples (``name``, ``ts``, ``value`` and string label columns)."""
    body, media_type = await request.body(), request.headers.get("content-type", "application/json")

    def decode_and_write() -> int:  # in a worker thread: the event loop also runs the collectors
        frame = decode(body, media_type)
        return store.write(coerce_ts(frame)) if frame.height else 0

    return Written(written=await run_in_threadpool(decode_and_write))


@router.post("/metadata", response_model=Written, tags=["data"])
def describe(store: Annotated[Store, Depends(store_of)], body: Annotated[list[MetricIn], Body()]) -> Written:
    """Declare metric metadata (type, unit, help)."""
    store.describe(MetricInfo(**item.model_dump()) for item in body)
    return Written(written=len(body))


def coerce_ts(frame: pl.DataFrame) -> pl.DataFrame:
    """Accept ``ts`` as text too — ISO 8601 or Unix seconds, mixed freely — or as Unix seconds (numbers)."""
    if "ts" not in frame.columns:
        return frame
    dtype = frame.schema["ts"]
    if dtype == pl.String or dtype.is_numeric():
        now = utcnow()
        try:
            times = [parse_time(value, now=now) if value is not None else None for value in frame["ts"].to_list()]
        except (QueryError, OverflowError, OSError) as exc:  # out-of-range Unix seconds raise the latter two
            raise QueryError(f"column ts: {exc}") from exc
        return frame.with_columns(pl.Series("ts", times, dtype=pl.Datetime("us", "UTC")))
    return frame
