"""Receiver configuration and secret handling (no network: real deliveries are in tests/integration/alerting)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from analytics.alerting.delivery import Deliverer, ReceiverSpec, redact
from analytics.alerting.model import Alert, Notification
from qwq_core.errors import ConfigError, NotFoundError

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET_URL = "mailto://alerts:hunter2secret@mail.example.com:587/?to=ops@example.com"


def test_urls_are_secrets_in_dumps_and_reprs() -> None:
    receiver = ReceiverSpec(name="ops", urls=[SECRET_URL])  # type: ignore[list-item]
    assert "hunter2" not in repr(receiver) and "hunter2" not in str(receiver.model_dump())
    assert receiver.urls[0].get_secret_value() == SECRET_URL


def test_urls_can_come_from_the_environment() -> None:
    spec = {"name": "ops", "urls": ["env:QWQ_TEST_HOOK", {"env": "QWQ_TEST_HOOK"}]}
    receiver = ReceiverSpec.model_validate(spec, context={"env": {"QWQ_TEST_HOOK": SECRET_URL}})
    assert [url.get_secret_value() for url in receiver.urls] == [SECRET_URL, SECRET_URL]
    with pytest.raises(ValidationError, match="environment variable QWQ_TEST_HOOK is not set"):
        ReceiverSpec.model_validate(spec, context={"env": {}})


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"urls": []}, "at least 1 item"),
        ({"title": "{{ status "}, "invalid template"),
        ({"attempts": 0}, "greater than or equal to 1"),
        ({"retries": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_receivers_are_refused(spec: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        ReceiverSpec.model_validate({"name": "ops", "urls": ["json://127.0.0.1:9/x"], **spec})


def test_urls_apprise_cannot_send_to_are_config_errors_that_do_not_echo_the_url() -> None:
    bad = ReceiverSpec(name="ops", urls=["json://127.0.0.1:9/x", "nosuch://token-abc123@x"])  # type: ignore[list-item]
    with pytest.raises(ConfigError) as caught:
        Deliverer([bad])
    (issue,) = caught.value.issues
    assert str(issue) == "alerting: receivers.ops.urls[1]: not a URL apprise can send to (scheme 'nosuch')"
    assert "token-abc123" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "url", "expected"),
    [
        ("login alerts:hunter2 refused", "mailto://alerts:hunter2@mail.example.com", "login ****:**** refused"),
        ("POST /hooks/T0KEN123 failed", "json://hooks.example.com/hooks/T0KEN123", "POST /****/**** failed"),
        ("bad token abcdef", "tgram://abcdef/12345678", "bad token ****"),
        ("to 127.0.0.1:8080 refused", "json://127.0.0.1:8080/x", "to 127.0.0.1:8080 refused"),
        ("full json://u:p4ss@h.example/x?k=v", "json://u:p4ss@h.example/x?k=v", "full ****"),
    ],
)
def test_redact_masks_every_part_of_the_url_that_may_be_secret(text: str, url: str, expected: str) -> None:
    assert redact(text, url) == expected


def test_resolved_only_notifications_are_skipped_when_the_receiver_does_not_send_them() -> None:
    receiver = ReceiverSpec(name="quiet", urls=["json://127.0.0.1:9/never"], send_resolved=False)  # type: ignore[list-item]
    alert = Alert(labels={"alertname": "X"}, starts_at=T0, status="resolved", ends_at=T0)
    notification = Notification("quiet", "k", {}, (), (alert,), T0)
    delivery = asyncio.run(Deliverer([receiver]).deliver(notification))
    assert delivery.skipped and not delivery.delivered and delivery.events == ()


def test_an_unknown_receiver_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="no receiver named 'nobody'"):
        Deliverer([]).receiver("nobody")
