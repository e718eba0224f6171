"""Sending notifications through apprise, with retries, and a delivery log of every attempt.

A *receiver* is a named list of apprise URLs (``json://``, ``mailto://``, ``slack://``, … — anything apprise
speaks) with templates for the title and body and whether resolved alerts are sent::

    [[alerting.receivers]]
    name = "ops"
    urls = ["env:QWQ_OPS_MAIL_URL", "json://hooks.example.com/qwq"]   # "env:NAME": from the environment
    send_resolved = true
    title = "[{{ status | upper }}] {{ group_labels.alertname }}"

:class:`Deliverer` sends a :class:`Notification` to each URL of its receiver independently (a URL that
fails is retried without re-sending to those that succeeded), up to ``attempts`` times with exponential
backoff. Every attempt becomes an event — ``notification.sent`` or ``notification.failed`` — whose attrs
hold the receiver, group key, alert fingerprints, URL index and scheme, attempt, outcome, error, title and
body: the delivery log, queryable with ``Store.events(kind="notification.*")``.

URLs carry secrets (passwords, tokens), so they never appear in events, logs or errors: a URL is named by
its receiver, index and scheme, and apprise's error text is scrubbed of every part of the URL that could
be a secret. Apprise blocks, so each attempt runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import apprise
from pydantic import BaseModel, ConfigDict, Field, field_validator

from analytics.alerting.model import Notification
from analytics.alerting.templates import compile_template, render_notification
from qwq_core.errors import ConfigError, ConfigIssue, NotFoundError
from qwq_core.model import Event, Severity
from qwq_core.secrets import Secret
from qwq_core.settings import Duration
from qwq_core.timeutil import utcnow

__all__ = ["Deliverer", "Delivery", "ReceiverSpec", "redact"]

log = logging.getLogger(__name__)

SOURCE = "delivery"
BODY_LIMIT = 4000
"""The most characters of a body kept in the delivery log."""
_URL_PARTS = re.compile(r"[/?&=@:#,+;\s]+")
_HOSTNAME = re.compile(r"^(?:[a-z0-9-]+\.)+[a-z0-9-]+$|^localhost$|^\d{1,5}$", re.IGNORECASE)
_NOTIFY_TYPE = {"critical": "failure", "error": "failure", "warning": "warning"}


class ReceiverSpec(BaseModel):
    """A named list of apprise URLs and how notifications to them look."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="what routes refer to")
    urls: tuple[Secret, ...] = Field(
        min_length=1, description='apprise URLs, each literal or "env:NAME" (secrets; never logged)'
    )
    send_resolved: bool = Field(default=True, description="also notify when a group's alerts resolve")
    title: str | None = Field(default=None, description="title template (default: Alertmanager's subject)")
    body: str | None = Field(default=None, description="body template (default: one paragraph per alert)")
    body_format: Literal["text", "markdown", "html"] = Field(default="text", description="how the body is read")
    attempts: int = Field(default=3, ge=1, le=20, description="tries per URL before giving up")
    backoff: Duration = Field(default=timedelta(seconds=1), description="wait before the first retry; doubles")
    max_backoff: Duration = Field(default=timedelta(minutes=1), description="longest wait between retries")
    timeout: Duration = Field(default=timedelta(seconds=15), description="limit for one attempt")

    def problems(self) -> list[ConfigIssue]:
        """URLs apprise cannot send to, as issues naming the URL by index and scheme only.

        Not a validator: pydantic echoes the input in its errors, and the input is the secret.
        """
        issues = []
        for index, url in enumerate(self.urls):
            if apprise.Apprise.instantiate(url.get_secret_value()) is None:
                scheme = url.get_secret_value().partition("://")[0]
                reason = f"not a URL apprise can send to (scheme {scheme!r})"
                issues.append(ConfigIssue("alerting", f"receivers.{self.name}.urls[{index}]", reason))
        return issues

    @field_validator("title", "body")
    @classmethod
    def _template(cls, text: str | None) -> str | None:
        if text is not None:
            compile_template(text)
        return text


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one notification to one receiver."""

    receiver: str
    delivered: bool
    """Every URL of the receiver accepted it (false also when there was nothing to send)."""
    events: tuple[Event, ...]
    """One event per attempt, in the order they happened."""
    skipped: bool = False
    """Nothing was sent: only resolved alerts, and the receiver does not send those."""


def redact(text: str, url: str) -> str:
    """``text`` with every part of ``url`` that could be a secret (user, password, path, query) masked."""
    rest = url.partition("://")[2] or url
    parts = {part for part in _URL_PARTS.split(rest) if len(part) >= 3 and not _HOSTNAME.match(part)}
    for part in sorted(parts | {url, rest}, key=len, reverse=True):
        text = text.replace(part, "****")
    return text


def _notify(url: str, title: str, body: str, notify_type: str, body_format: str, timeout: float) -> str | None:
    """Send once (blocking); None on success, else why it failed (redacted)."""
    sender = apprise.Apprise()
    sender.add(url)
    try:
        result = sender.notify(
            body=body, title=title, notify_type=notify_type, body_format=body_format, timeout=timeout
        )
    except Exception as exc:  # apprise raising is as much a failed delivery as apprise saying False
        return redact(f"{type(exc).__name__}: {exc}", url)
    if result:
        return None
    messages = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    return redact("; ".join(messages) or f"apprise status {result.status.name}", url)


class Deliverer:
    """Sends notifications to receivers, retrying each URL with exponential backoff.

    Raises :class:`ConfigError` if a receiver has a URL apprise cannot send to.

    ``record`` (e.g. ``store.record``) is called with each attempt's event as soon as it happens; ``sleep``
    and ``clock`` are injectable for tests.
    """

    def __init__(
        self,
        receivers: Iterable[ReceiverSpec],
        *,
        record: Callable[[Sequence[Event]], None] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.receivers = {receiver.name: receiver for receiver in receivers}
        issues = [issue for receiver in self.receivers.values() for issue in receiver.problems()]
        if issues:
            raise ConfigError(issues)
        self._record = record
        self._sleep = sleep
        self._clock = clock

    def receiver(self, name: str) -> ReceiverSpec:
        """The receiver called ``name``; raises :class:`NotFoundError`."""
        try:
            return self.receivers[name]
        except KeyError:
            raise NotFoundError(f"no receiver named {name!r}") from None

    async def deliver(self, notification: Notification) -> Delivery:
        """Send ``notification`` to every URL of its receiver; the outcome and the attempts' events."""
        receiver = self.receiver(notification.receiver)
        if not receiver.send_resolved and notification.resolved:
            notification = replace(notification, resolved=())
        if not notification.firing and not notification.resolved:
            return Delivery(receiver.name, delivered=False, events=(), skipped=True)
        title, body = render_notification(notification, receiver.title, receiver.body)
        events: list[Event] = []
        outcomes = await asyncio.gather(
            *(
                self._deliver_url(receiver, index, url.get_secret_value(), notification, title, body, events)
                for index, url in enumerate(receiver.urls)
            )
        )
        return Delivery(receiver.name, delivered=all(outcomes), events=tuple(events))

    async def _deliver_url(
        self,
        receiver: ReceiverSpec,
        index: int,
        url: str,
        notification: Notification,
        title: str,
        body: str,
        events: list[Event],
    ) -> bool:
        notify_type = _notify_type(notification)
        for attempt in range(1, receiver.attempts + 1):
            error = await asyncio.to_thread(
                _notify, url, title, body, notify_type, receiver.body_format, receiver.timeout.total_seconds()
            )
            event = self._event(receiver, index, url, notification, title, body, attempt, error)
            events.append(event)
            if self._record is not None:
                self._record([event])
            if error is None:
                return True
            log.warning("notification to %s[%d] failed (attempt %d): %s", receiver.name, index, attempt, error)
            if attempt < receiver.attempts:
                delay = min(receiver.backoff * 2 ** (attempt - 1), receiver.max_backoff)
                await self._sleep(delay.total_seconds())
        return False

    def _event(
        self,
        receiver: ReceiverSpec,
        index: int,
        url: str,
        notification: Notification,
        title: str,
        body: str,
        attempt: int,
        error: str | None,
    ) -> Event:
        scheme = url.partition("://")[0]
        target = f"{receiver.name}[{index}] ({scheme})"
        outcome = "sent" if error is None else "failed"
        final = error is not None and attempt == receiver.attempts
        severity: Severity = "info" if error is None else ("error" if final else "warning")
        message = f"{notification.status} notification to {target}: {title}"
        if error is not None:
            message = f"attempt {attempt}/{receiver.attempts} to {target} failed: {error}"
        return Event(
            kind=f"notification.{outcome}",
            message=message,
            source=SOURCE,
            severity=severity,
            attrs={
                "receiver": receiver.name,
                "group_key": notification.group_key,
                "status": notification.status,
                "firing": [a.fingerprint for a in notification.firing],
                "resolved": [a.fingerprint for a in notification.resolved],
                "url_index": index,
                "scheme": scheme,
                "attempt": attempt,
                "attempts": receiver.attempts,
                "outcome": outcome,
                "final": error is None or final,
                "error": error,
                "title": title,
                "body": body[:BODY_LIMIT],
            },
            ts=self._clock(),
        )


def _notify_type(notification: Notification) -> str:
    """apprise's message type: failure for critical or error alerts, warning, info; success when resolved."""
    if not notification.firing:
        return "success"
    severities = {alert.labels.get("severity", "") for alert in notification.firing}
    for severity in ("critical", "error", "warning"):
        if severity in severities:
            return _NOTIFY_TYPE[severity]
    return "info"
