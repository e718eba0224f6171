"""Alerts from outside: Prometheus Alertmanager webhooks and a generic JSON alert, parsed into :class:`Alert`.

:func:`parse_alerts` takes a decoded JSON body (what ``POST /api/v1/alerts`` receives) and tells the two
formats apart by the ``version`` key:

- **Alertmanager webhook** (``version: "4"``): ``alerts`` is a list of ``{status, labels, annotations,
  startsAt, endsAt, generatorURL, fingerprint}``; the envelope (receiver, groupKey, …) is not needed. Keys
  Alertmanager may add later are ignored.
- **Generic**: one alert, a list of them, or ``{"alerts": [...]}``. Each alert is either the full form
  ``{labels, annotations?, status?, startsAt?, endsAt?, generatorURL?, value?}`` or the simple form
  ``{name, severity?, host?, message?, description?, status?, labels?}``, where ``name`` becomes
  ``alertname``, ``message`` the ``summary`` annotation. Unknown keys are refused.

Validation is strict — label names as in Prometheus, string values, RFC 3339 times, at most
:data:`MAX_ALERTS` alerts — and every problem is reported as an :class:`IntakeError` naming where it is
(``alerts[3].labels: ...``). Times without a zone are UTC; a missing ``startsAt`` is ``now``; a resolved
alert without ``endsAt`` ended ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from analytics.alerting.model import Alert
from qwq_core.errors import QueryError
from qwq_core.model import LABEL_NAME
from qwq_core.timeutil import as_utc

__all__ = ["MAX_ALERTS", "IntakeError", "parse_alertmanager", "parse_alerts", "parse_generic"]

MAX_ALERTS = 10_000
"""The most alerts one payload may carry."""

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time: Alertmanager's "no end yet"


class IntakeError(QueryError):
    """A payload that is not a valid Alertmanager webhook or generic alert (HTTP 400)."""


def _label_names(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not LABEL_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid label name")
    return labels


def _rfc3339(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 time string, got {type(value).__name__}")
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not an RFC 3339 time") from None


Labels = Annotated[dict[str, str], Field(min_length=1), AfterValidator(_label_names)]
Time = Annotated[datetime, BeforeValidator(_rfc3339)]


class _AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: Time
    endsAt: Time | None = None
    generatorURL: str = ""


class _AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    alerts: list[_AlertmanagerAlert] = Field(max_length=MAX_ALERTS)


class _FullAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: Labels
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    startsAt: Time | None = None
    endsAt: Time | None = None
    generatorURL: str = ""
    value: float | None = None


class _SimpleAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    severity: str = "warning"
    host: str = ""
    message: str = ""
    description: str = ""
    status: Literal["firing", "resolved"] = "firing"
    labels: Annotated[dict[str, str], AfterValidator(_label_names)] = Field(default_factory=dict)


def _issues(error: ValidationError, prefix: str) -> str:
    """``alerts[0].labels: Field required; version: Input should be '4'`` from a pydantic error."""
    parts = []
    for issue in error.errors(include_url=False):
        where = prefix
        for item in issue["loc"]:
            where += f"[{item}]" if isinstance(item, int) else (f".{item}" if where else str(item))
        message = str(issue["msg"]).removeprefix("Value error, ")
        parts.append(f"{where or 'payload'}: {message}")
    return "; ".join(parts)


def _ends(status: str, ends_at: datetime | None, now: datetime) -> datetime | None:
    """When a resolved alert ended (``now`` if not said); firing alerts carry no end."""
    if ends_at is None or as_utc(ends_at) <= _ZERO_TIME:
        return now if status == "resolved" else None
    return as_utc(ends_at) if status == "resolved" else None


def parse_alertmanager(payload: Mapping[str, Any], now: datetime) -> list[Alert]:
    """The alerts of an Alertmanager webhook payload (version 4); raises :class:`IntakeError`."""
    try:
        parsed = _AlertmanagerPayload.model_validate(payload)
    except ValidationError as exc:
        raise IntakeError(f"invalid Alertmanager payload: {_issues(exc, '')}") from None
    now = as_utc(now)
    return [
        Alert(
            labels=alert.labels,
            starts_at=as_utc(alert.startsAt),
            status=alert.status,
            annotations=alert.annotations,
            ends_at=_ends(alert.status, alert.endsAt, now),
            source="alertmanager",
            generator_url=alert.generatorURL,
        )
        for alert in parsed.alerts
    ]


def _generic_one(item: Any, where: str, now: datetime) -> Alert:
    if not isinstance(item, Mapping):
        raise IntakeError(f"invalid alert: {where}: expected an object, got {type(item).__name__}")
    try:
        if "name" in item:
            simple = _SimpleAlert.model_validate(item)
            labels = {**simple.labels, "alertname": simple.name, "severity": simple.severity, "host": simple.host}
            annotations = {"summary": simple.message, "description": simple.description}
            full = _FullAlert(
                labels={k: v for k, v in labels.items() if v},
                annotations={k: v for k, v in annotations.items() if v},
                status=simple.status,
            )
        else:
            full = _FullAlert.model_validate(item)
    except ValidationError as exc:
        raise IntakeError(f"invalid alert: {_issues(exc, where)}") from None
    return Alert(
        labels=full.labels,
        starts_at=as_utc(full.startsAt) if full.startsAt else now,
        status=full.status,
        annotations=full.annotations,
        ends_at=_ends(full.status, full.endsAt, now),
        source="generic",
        generator_url=full.generatorURL,
        value=full.value,
    )


def parse_generic(payload: Any, now: datetime) -> list[Alert]:
    """The alerts of a generic payload: one alert, a list, or ``{"alerts": [...]}``."""
    now = as_utc(now)
    if isinstance(payload, Mapping) and set(payload) == {"alerts"}:
        items, prefix = payload["alerts"], "alerts"
    elif isinstance(payload, Mapping):
        return [_generic_one(payload, "", now)]
    else:
        items, prefix = payload, ""
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise IntakeError(f"invalid payload: expected an alert object or a list of alerts, got {type(items).__name__}")
    if len(items) > MAX_ALERTS:
        raise IntakeError(f"too many alerts in one payload: {len(items)} (at most {MAX_ALERTS})")
    return [_generic_one(item, f"{prefix}[{i}]", now) for i, item in enumerate(items)]


def parse_alerts(payload: Any, now: datetime) -> list[Alert]:
    """Alerts from a decoded JSON body: an Alertmanager webhook if it has ``version``, else generic."""
    if isinstance(payload, Mapping) and "version" in payload:
        return parse_alertmanager(payload, now)
    return parse_generic(payload, now)
