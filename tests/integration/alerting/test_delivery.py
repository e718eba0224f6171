"""Real deliveries through apprise to local receivers: exactly what arrives, how often, and the delivery log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics.alerting.delivery import Deliverer, Delivery, ReceiverSpec
from analytics.alerting.model import Alert, Notification
from qwq_core.store import LocalStore
from tests.services.receivers import HttpReceiver, SmtpReceiver
from tests.support import free_port

pytestmark = pytest.mark.service

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


def alert(host: str, status: str = "firing") -> Alert:
    return Alert(
        labels={"alertname": "HostDown", "host": host, "severity": "critical"},
        starts_at=T0,
        status=status,  # type: ignore[arg-type]
        annotations={"summary": f"{host} is down"},
        ends_at=T0 if status == "resolved" else None,
        value=0.0,
    )


def notification(firing: tuple[Alert, ...] = (), resolved: tuple[Alert, ...] = ()) -> Notification:
    return Notification("ops", '{}:{alertname="HostDown"}', {"alertname": "HostDown"}, firing, resolved, T0)


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def deliver(receiver: ReceiverSpec, sent: Notification, **options: Any) -> Delivery:
    return asyncio.run(Deliverer([receiver], **options).deliver(sent))


def receiver(*urls: str, **spec: Any) -> ReceiverSpec:
    return ReceiverSpec.model_validate({"name": "ops", "urls": list(urls), **spec})


def test_json_receiver_gets_exactly_one_post_and_the_log_records_it(http: HttpReceiver, store: LocalStore) -> None:
    delivery = deliver(
        receiver(http.url("json")), notification(firing=(alert("db1"), alert("db2"))), record=store.record
    )
    assert delivery.delivered
    (request,) = http.wait_for(1)
    payload = request.json()
    assert (request.method, request.path, payload["type"]) == ("POST", "/hook", "failure")  # critical alerts
    assert payload["title"] == "[FIRING:2] HostDown"
    assert payload["message"].count("[FIRING]") == 2 and "db2 is down" in payload["message"]
    (row,) = store.events(kind="notification.*").iter_rows(named=True)
    attrs = json.loads(row["attrs"])
    assert (row["kind"], attrs["receiver"], attrs["outcome"], attrs["attempt"]) == (
        "notification.sent",
        "ops",
        "sent",
        1,
    )
    assert attrs["firing"] == [alert("db1").fingerprint, alert("db2").fingerprint]
    assert attrs["title"] == payload["title"] and attrs["body"] == payload["message"]
    assert attrs["group_key"] == '{}:{alertname="HostDown"}' and attrs["scheme"] == "json"


def test_form_receiver_gets_the_fields_urlencoded(http: HttpReceiver) -> None:
    deliver(receiver(http.url("form", "/form")), notification(firing=(alert("db1"),)))
    (request,) = http.wait_for(1)
    form = request.form()
    assert request.path == "/form" and form["title"] == "[FIRING:1] HostDown"
    assert form["message"].startswith("[FIRING] db1 is down")


def test_mail_arrives_once_with_title_as_subject(smtp: SmtpReceiver) -> None:
    delivery = deliver(receiver(smtp.url(to="oncall@example.test")), notification(firing=(alert("db1"),)))
    assert delivery.delivered
    (mail,) = smtp.wait_for(1)
    assert mail.recipients == ["oncall@example.test"] and mail.sender == "qwq@example.test"
    assert mail.message["Subject"] == "[FIRING:1] HostDown"
    assert "[FIRING] db1 is down" in mail.text() and "host=db1" in mail.text()
    assert len(smtp.messages) == 1


def test_a_receiver_failing_twice_gets_three_attempts_with_backoff(http: HttpReceiver) -> None:
    http.fail_next(2)
    sleeps = Sleeps()
    delivery = deliver(receiver(http.url("json"), backoff="2s"), notification(firing=(alert("db1"),)), sleep=sleeps)
    assert delivery.delivered
    assert [r.status for r in http.wait_for(3)] == [500, 500, 200]
    assert len(http.requests) == 3
    assert [(e.kind, e.attrs["attempt"], e.severity) for e in delivery.events] == [
        ("notification.failed", 1, "warning"),
        ("notification.failed", 2, "warning"),
        ("notification.sent", 3, "info"),
    ]
    assert "500" in delivery.events[0].attrs["error"]
    assert sleeps.delays == [2.0, 4.0]  # exponential


def test_delivery_gives_up_after_the_last_attempt(http: HttpReceiver) -> None:
    http.fail_next(10)
    sleeps = Sleeps()
    spec = receiver(http.url("json"), attempts=3, backoff="10s", max_backoff="15s")
    delivery = deliver(spec, notification(firing=(alert("db1"),)), sleep=sleeps)
    assert not delivery.delivered and len(http.wait_for(3)) == 3
    assert [e.kind for e in delivery.events] == ["notification.failed"] * 3
    assert delivery.events[-1].severity == "error" and delivery.events[-1].attrs["final"] is True
    assert sleeps.delays == [10.0, 15.0]  # capped by max_backoff


def test_each_url_is_retried_alone(http: HttpReceiver, smtp: SmtpReceiver) -> None:
    http.fail_next(1)
    delivery = deliver(receiver(http.url("json"), smtp.url()), notification(firing=(alert("db1"),)), sleep=Sleeps())
    assert delivery.delivered
    assert len(http.wait_for(2)) == 2 and len(smtp.wait_for(1)) == 1
    assert sorted((e.attrs["url_index"], e.attrs["outcome"]) for e in delivery.events) == [
        (0, "failed"),
        (0, "sent"),
        (1, "sent"),
    ]


def test_resolved_notifications_follow_send_resolved(http: HttpReceiver) -> None:
    deliver(receiver(http.url("json")), notification(resolved=(alert("db1", "resolved"),)))
    (resolved,) = http.wait_for(1)
    assert resolved.json()["type"] == "success" and resolved.json()["title"] == "[RESOLVED] HostDown"

    mixed = notification(firing=(alert("db1"),), resolved=(alert("db2", "resolved"),))
    deliver(receiver(http.url("json"), send_resolved=False), mixed)
    message = http.wait_for(2)[1].json()["message"]
    assert "db1" in message and "db2" not in message  # resolved alerts left out


def test_custom_templates_shape_what_arrives(http: HttpReceiver) -> None:
    spec = receiver(
        http.url("json"),
        title="{{ firing | length }} down: {{ firing | map(attribute='labels.host') | join(', ') }}",
        body="{% for a in firing %}{{ a.labels.host }}={{ a.value }};{% endfor %}",
    )
    deliver(spec, notification(firing=(alert("db1"), alert("db2"))))
    payload = http.wait_for(1)[0].json()
    assert (payload["title"], payload["message"]) == ("2 down: db1, db2", "db1=0.0;db2=0.0;")


def test_secrets_in_urls_reach_the_receiver_but_never_the_log(
    http: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    http.fail_next(1)
    url = f"json://qwq:s3cr3t-pw@127.0.0.1:{http.port}/hooks/T0KEN-xyz"
    with caplog.at_level(logging.DEBUG):
        delivery = deliver(receiver(url), notification(firing=(alert("db1"),)), sleep=Sleeps())
    first, second = http.wait_for(2)
    assert second.path == "/hooks/T0KEN-xyz" and second.headers["Authorization"].startswith("Basic ")
    # apprise's and urllib3's own DEBUG lines show the path (not the password); everything from INFO up and
    # everything of ours — events and log lines — shows neither
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO or r.name.startswith("analytics")]
    logged = json.dumps([e.as_row() for e in delivery.events], default=str) + "\n".join(shown)
    assert "s3cr3t-pw" not in logged + caplog.text and "T0KEN-xyz" not in logged
    assert delivery.events[0].attrs["error"]  # the failure is explained, redacted


def test_an_unreachable_receiver_is_a_failed_attempt_with_a_reason() -> None:
    spec = receiver(f"json://127.0.0.1:{free_port()}/hook", attempts=2)
    delivery = deliver(spec, notification(firing=(alert("db1"),)), sleep=Sleeps())
    assert not delivery.delivered and [e.attrs["attempt"] for e in delivery.events] == [1, 2]
    assert "onnection" in delivery.events[0].attrs["error"]
