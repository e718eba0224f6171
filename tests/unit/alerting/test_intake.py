"""Intake of external alerts: Alertmanager webhooks (version 4) and the generic JSON alert."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from analytics.alerting.intake import MAX_ALERTS, IntakeError, parse_alerts
from qwq_core.errors import QueryError, http_status

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# As Alertmanager 0.27 posts it (docs: prometheus.io/docs/alerting/latest/configuration/#webhook_config).
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="HostDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "qwq",
    "groupLabels": {"alertname": "HostDown"},
    "commonLabels": {"alertname": "HostDown", "severity": "critical"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HostDown", "instance": "db1:9100", "severity": "critical"},
            "annotations": {"summary": "db1 is down"},
            "startsAt": "2025-03-01T11:58:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
            "fingerprint": "c4a5b27e4aa1e0c4",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "HostDown", "instance": "db2:9100", "severity": "critical"},
            "annotations": {},
            "startsAt": "2025-03-01T11:00:00Z",
            "endsAt": "2025-03-01T11:30:00+01:00",
            "generatorURL": "",
            "fingerprint": "0d0f1b9a8ac9bd44",
        },
    ],
}


def test_an_alertmanager_webhook_becomes_alerts() -> None:
    firing, resolved = parse_alerts(ALERTMANAGER, NOW)
    assert dict(firing.labels) == {"alertname": "HostDown", "instance": "db1:9100", "severity": "critical"}
    assert firing.status == "firing" and firing.ends_at is None  # Go's zero time: no end
    assert firing.starts_at == datetime(2025, 3, 1, 11, 58, 0, 123456, tzinfo=UTC)
    assert firing.annotations == {"summary": "db1 is down"} and firing.source == "alertmanager"
    assert firing.generator_url.startswith("http://prometheus:9090/")
    assert resolved.status == "resolved" and resolved.ends_at == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)


def test_unknown_envelope_keys_from_newer_alertmanagers_are_ignored() -> None:
    payload = {**ALERTMANAGER, "somethingNew": True}
    payload["alerts"] = [{**ALERTMANAGER["alerts"][0], "newField": 1}]  # type: ignore[index]
    assert len(parse_alerts(payload, NOW)) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "3"}, "version: Input should be '4'"),
        ({"alerts": "x"}, "alerts: Input should be a valid list"),
        ({"alerts": [{"status": "firing", "labels": {}, "startsAt": "2025-03-01T11:00:00Z"}]}, "alerts[0].labels"),
        (
            {"alerts": [{"status": "gone", "labels": {"a": "b"}, "startsAt": "2025-03-01T11:00:00Z"}]},
            "alerts[0].status",
        ),
        ({"alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": "yesterday"}]}, "not an RFC 3339 time"),
        ({"alerts": [{"status": "firing", "labels": {"a": "b"}, "startsAt": 1700000000}]}, "expected an RFC 3339"),
        ({"alerts": [{"status": "firing", "labels": {"a": "b"}}]}, "alerts[0].startsAt: Field required"),
        ({"alerts": [{"status": "firing", "labels": {"a-b": "c"}, "startsAt": "2025-03-01T11:00:00Z"}]}, "label name"),
        (
            {"alerts": [{"status": "firing", "labels": {"a": 1}, "startsAt": "2025-03-01T11:00:00Z"}]},
            "alerts[0].labels.a",
        ),
    ],
)
def test_invalid_alertmanager_payloads_are_refused_saying_where(change: dict[str, Any], message: str) -> None:
    with pytest.raises(IntakeError, match="invalid Alertmanager payload") as caught:
        parse_alerts({**ALERTMANAGER, **change}, NOW)
    assert message in str(caught.value)
    assert isinstance(caught.value, QueryError) and http_status(caught.value) == 400


def test_the_generic_simple_form() -> None:
    (alert,) = parse_alerts(
        {"name": "BackupFailed", "severity": "error", "host": "nas", "message": "rsync exit 23"}, NOW
    )
    assert dict(alert.labels) == {"alertname": "BackupFailed", "severity": "error", "host": "nas"}
    assert alert.annotations == {"summary": "rsync exit 23"}
    assert (alert.status, alert.starts_at, alert.ends_at, alert.source) == ("firing", NOW, None, "generic")


def test_the_generic_full_form_and_lists() -> None:
    full = {
        "labels": {"alertname": "Cert", "site": "shop"},
        "annotations": {"summary": "expires soon"},
        "startsAt": "2025-03-01T10:00:00",  # no zone: UTC
        "value": 6.5,
    }
    resolved = {"labels": {"alertname": "Cert", "site": "blog"}, "status": "resolved"}
    alerts = parse_alerts({"alerts": [full, resolved]}, NOW)
    assert [a.labels["site"] for a in alerts] == ["shop", "blog"]
    assert alerts[0].starts_at == datetime(2025, 3, 1, 10, tzinfo=UTC) and alerts[0].value == 6.5
    assert alerts[1].status == "resolved" and alerts[1].ends_at == NOW  # resolved without endsAt: ended now
    assert len(parse_alerts([full, {"name": "x"}], NOW)) == 2


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"name": ""}, "name: String should have at least 1 character"),
        ({"name": "x", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"labels": {"a": "b"}, "unknown": 1}, "unknown: Extra inputs are not permitted"),
        ({"alerts": [{"name": "ok"}, {"labels": {}}]}, "alerts[1].labels"),
        ([{"name": "ok"}, "text"], "[1]: expected an object"),
        ("just text", "expected an alert object or a list"),
        ({"alerts": [{"name": "x"}] * (MAX_ALERTS + 1)}, "too many alerts"),
    ],
)
def test_invalid_generic_payloads_are_refused_saying_where(payload: Any, message: str) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_alerts(payload, NOW)
    assert message in str(caught.value)
