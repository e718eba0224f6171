"""Text templates for alerts and notifications: jinja2 in a sandbox, with Prometheus' humanising helpers.

Rule labels and annotations and receiver titles and bodies are jinja2 templates rendered by a
:class:`~jinja2.sandbox.SandboxedEnvironment` (a template can read what it is given, never call into
Python). Prometheus' spelling ``{{ $labels.host }}`` / ``{{ $value }}`` is accepted as well as jinja2's
``{{ labels.host }}`` / ``{{ value }}``. Filters: ``humanize`` (SI prefixes), ``humanize1024`` (binary
prefixes), ``humanize_duration`` (seconds → ``1d 2h 3m 4s``) and ``humanize_percentage`` (ratio → ``%``),
also under Prometheus' camel-case names.

A template that fails while rendering yields ``<template error: …>`` in place of its text rather than
losing the alert or the notification; a template that does not compile is rejected when the configuration
is read.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from analytics.alerting.model import Alert, Notification

__all__ = [
    "DEFAULT_BODY",
    "DEFAULT_TITLE",
    "compile_template",
    "humanize",
    "humanize1024",
    "humanize_duration",
    "humanize_percentage",
    "notification_context",
    "render",
    "render_notification",
]

log = logging.getLogger(__name__)

DEFAULT_TITLE = (
    "[{{ status | upper }}{% if status == 'firing' %}:{{ firing | length }}{% endif %}] "
    "{{ group_labels.alertname or common_labels.alertname or 'alerts' }}"
    "{% set other = group_labels_text(exclude=['alertname']) %}{% if other %} ({{ other }}){% endif %}"
)
"""Alertmanager's subject line: ``[FIRING:2] HostDown (host=db1)``."""

DEFAULT_BODY = """\
{% for alert in firing %}
[FIRING] {{ alert.annotations.summary or alert.labels.alertname }}
{% if alert.annotations.description %}  {{ alert.annotations.description }}
{% endif %}
  labels: {{ alert.labels_text }}
{% if alert.value is not none %}  value: {{ alert.value | humanize }}
{% endif %}
  since: {{ alert.starts_at }}
{% endfor %}
{% for alert in resolved %}
[RESOLVED] {{ alert.annotations.summary or alert.labels.alertname }}
  labels: {{ alert.labels_text }}
  from {{ alert.starts_at }} to {{ alert.ends_at }}
{% endfor %}"""
"""One paragraph per alert: summary, description, labels, value and times; firing alerts first."""

_TEMPLATE_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_PROMETHEUS_VARIABLE = re.compile(r"\$(labels|value|annotations)\b")
_SI_LARGE = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")
_SI_SMALL = ("", "m", "µ", "n", "p", "f", "a", "z", "y")
_BINARY = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi")


# ---- humanising ------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not one (such values are printed as they are)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def humanize(value: Any) -> str:
    """``1234567`` → ``1.235M``, ``0.0012`` → ``1.2m``: four significant digits and an SI prefix."""
    number = _number(value)
    if number is None:
        return str(value)
    if number == 0 or abs(number) >= 1:
        prefixes, scale = _SI_LARGE, 1000.0
    else:
        prefixes, scale = _SI_SMALL, 1 / 1000.0
    index = 0
    while index < len(prefixes) - 1 and (abs(number) >= 1000 if scale > 1 else 0 < abs(number) < 1):
        number /= scale
        index += 1
    return f"{number:.4g}{prefixes[index]}"


def humanize1024(value: Any) -> str:
    """``1048576`` → ``1Mi``: four significant digits and a binary prefix (for bytes)."""
    number = _number(value)
    if number is None:
        return str(value)
    index = 0
    while index < len(_BINARY) - 1 and abs(number) >= 1024:
        number /= 1024
        index += 1
    return f"{number:.4g}{_BINARY[index]}"


def humanize_duration(value: Any) -> str:
    """Seconds as ``1d 2h 3m 4s`` (whole seconds), or ``250ms`` / ``12us`` below one second."""
    number = _number(value)
    if number is None:
        return str(value)
    if number == 0:
        return "0s"
    sign, seconds = ("-" if number < 0 else ""), abs(number)
    if seconds < 1:
        for unit, size in (("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
            if seconds >= size or unit == "ns":
                return f"{sign}{seconds / size:.4g}{unit}"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or not parts:
        parts.append(f"{whole}s")
    return sign + " ".join(parts)


def humanize_percentage(value: Any) -> str:
    """A ratio as a percentage: ``0.1234`` → ``12.34%``."""
    number = _number(value)
    return str(value) if number is None else f"{number * 100:.4g}%"


# ---- compiling and rendering -----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
    filters = {
        "humanize": humanize,
        "humanize1024": humanize1024,
        "humanize_duration": humanize_duration,
        "humanize_percentage": humanize_percentage,
    }
    env.filters.update(filters)
    env.filters.update(
        humanizeDuration=humanize_duration,
        humanizePercentage=humanize_percentage,
    )
    return env


@lru_cache(maxsize=4096)
def compile_template(text: str) -> Template:
    """Compile ``text`` (jinja2, ``$labels``/``$value`` allowed); raises ``ValueError`` naming the problem."""
    source = _TEMPLATE_BLOCK.sub(lambda block: _PROMETHEUS_VARIABLE.sub(r"\1", block.group()), text)
    try:
        return _environment().from_string(source)
    except TemplateError as exc:
        raise ValueError(f"invalid template {text!r}: {exc}") from None


def render(text: str, context: Mapping[str, Any]) -> str:
    """Render template ``text`` with ``context``; a failure yields ``<template error: …>`` and a warning."""
    if "{" not in text:  # plain text, the common case for labels
        return text
    try:
        template = compile_template(text)
        # A shared context does not copy the environment's globals at every call, which makes rendering
        # three times faster (it matters with thousands of firing alerts); they are passed along instead.
        shared = template.new_context({**_environment().globals, **context}, shared=True)
        return template.environment.concat(template.root_render_func(shared))
    except Exception as exc:  # a broken template must not lose the alert it describes
        log.warning("template %r failed: %s", text, exc)
        return f"<template error: {exc}>"


# ---- notifications ---------------------------------------------------------------------------------------
def _labels_text(labels: Mapping[str, str], exclude: Sequence[str] = ()) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()) if key not in exclude and value)


def _alert_context(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "labels_text": _labels_text(alert.labels),
        "starts_at": _when(alert.starts_at),
        "ends_at": _when(alert.ends_at),
        "value": alert.value,
        "fingerprint": alert.fingerprint,
        "generator_url": alert.generator_url,
        "source": alert.source,
    }


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment is not None else ""


def _common(mappings: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The items every mapping shares (Alertmanager's ``CommonLabels`` / ``CommonAnnotations``)."""
    if not mappings:
        return {}
    shared = dict(mappings[0])
    for mapping in mappings[1:]:
        shared = {key: value for key, value in shared.items() if mapping.get(key) == value}
    return shared


def notification_context(notification: Notification) -> dict[str, Any]:
    """What a title or body template sees.

    ``status`` (firing/resolved), ``receiver``, ``group_key``, ``group_labels``, ``common_labels``,
    ``common_annotations``, ``firing`` and ``resolved`` (lists of alerts), ``alerts`` (both), and
    ``group_labels_text(exclude=[...])``. Each alert has ``status``, ``labels``, ``annotations``,
    ``labels_text``, ``starts_at``, ``ends_at``, ``value``, ``fingerprint``, ``generator_url``, ``source``.
    """
    alerts = [*notification.firing, *notification.resolved]
    group_labels = dict(notification.group_labels)
    return {
        "status": notification.status,
        "receiver": notification.receiver,
        "group_key": notification.group_key,
        "group_labels": group_labels,
        "group_labels_text": lambda exclude=(): _labels_text(group_labels, exclude),
        "common_labels": _common([a.labels for a in alerts]),
        "common_annotations": _common([a.annotations for a in alerts]),
        "firing": [_alert_context(a) for a in notification.firing],
        "resolved": [_alert_context(a) for a in notification.resolved],
        "alerts": [_alert_context(a) for a in alerts],
        "ts": _when(notification.ts),
    }


def render_notification(
    notification: Notification, title: str | None = None, body: str | None = None
) -> tuple[str, str]:
    """The title and body of ``notification`` from the given templates (default: :data:`DEFAULT_TITLE`/``BODY``)."""
    context = notification_context(notification)
    rendered_title = render(title or DEFAULT_TITLE, context)
    rendered_body = render(body or DEFAULT_BODY, context)
    return " ".join(rendered_title.split()), rendered_body.strip()
