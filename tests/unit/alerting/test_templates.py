"""Alert and notification templates: humanising filters, Prometheus spelling, the sandbox, defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.alerting.model import Alert, Notification
from analytics.alerting.templates import (
    compile_template,
    humanize,
    humanize1024,
    humanize_duration,
    humanize_percentage,
    render,
    render_notification,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("function", "value", "text"),
    [
        (humanize, 1234567, "1.235M"),
        (humanize, 999, "999"),
        (humanize, 0, "0"),
        (humanize, 0.0012, "1.2m"),
        (humanize, -2500, "-2.5k"),
        (humanize, "n/a", "n/a"),
        (humanize, float("inf"), "inf"),
        (humanize1024, 1048576, "1Mi"),
        (humanize1024, 1536, "1.5Ki"),
        (humanize_duration, 93784, "1d 2h 3m 4s"),
        (humanize_duration, 60, "1m"),
        (humanize_duration, 0.25, "250ms"),
        (humanize_duration, 0, "0s"),
        (humanize_duration, -90, "-1m 30s"),
        (humanize_percentage, 0.1234, "12.34%"),
        (humanize_percentage, None, "None"),
    ],
)
def test_humanising(function: object, value: object, text: str) -> None:
    assert function(value) == text  # type: ignore[operator]


def test_prometheus_and_jinja_spellings_render_alike() -> None:
    context = {"labels": {"host": "db1"}, "value": 0.934}
    prometheus = render("{{ $labels.host }}: {{ $value | humanizePercentage }}", context)
    jinja = render("{{ labels.host }}: {{ value | humanize_percentage }}", context)
    assert prometheus == jinja == "db1: 93.4%"
    assert render("costs $value, {{ labels.missing }}.", context) == "costs $value, ."  # only inside {{ }}


def test_the_sandbox_refuses_to_reach_into_python() -> None:
    text = render("{{ labels.__class__.__mro__[1].__subclasses__() }}", {"labels": {}})
    assert text.startswith("<template error:") and "access to attribute" in text


def test_a_template_that_fails_to_render_says_so_instead_of_raising() -> None:
    assert render("{{ value + 1 }}", {"value": None}).startswith("<template error:")


def test_a_template_that_does_not_compile_raises_value_error() -> None:
    with pytest.raises(ValueError, match="invalid template"):
        compile_template("{{ labels.host ")


def alert(host: str, status: str = "firing", **annotations: str) -> Alert:
    return Alert(
        labels={"alertname": "HostDown", "host": host, "severity": "critical"},
        starts_at=T0,
        status=status,  # type: ignore[arg-type]
        annotations=annotations,
        ends_at=T0 if status == "resolved" else None,
        value=0.0,
    )


def test_default_title_and_body_follow_alertmanager() -> None:
    notification = Notification(
        receiver="ops",
        group_key="k",
        group_labels={"alertname": "HostDown", "site": "paris"},
        firing=(alert("db1", summary="db1 unreachable"), alert("db2")),
        resolved=(alert("db3", status="resolved"),),
        ts=T0,
    )
    title, body = render_notification(notification)
    assert title == "[FIRING:2] HostDown (site=paris)"
    assert body.splitlines()[0] == "[FIRING] db1 unreachable"
    assert body.count("[FIRING]") == 2 and body.count("[RESOLVED] HostDown") == 1
    assert "labels: alertname=HostDown, host=db2, severity=critical" in body


def test_custom_templates_see_the_group() -> None:
    notification = Notification("ops", "k", {"alertname": "HostDown"}, (), (alert("db1", status="resolved"),), T0)
    title, body = render_notification(
        notification,
        title="{{ status }} {{ common_labels.severity }} to {{ receiver }}",
        body="{% for a in alerts %}{{ a.labels.host }} {{ a.status }}{% endfor %}",
    )
    assert (title, body) == ("resolved critical to ops", "db1 resolved")
