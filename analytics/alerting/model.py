"""The alert data model shared by rules, external intake, the notification pipeline and delivery.

An :class:`Alert` is identified by its label set (``alertname`` plus whatever the rule or sender adds), as
in Prometheus Alertmanager: the :attr:`Alert.fingerprint` is a hash of the sorted labels, so the same
condition on the same series is always the same alert, whoever reports it and however often.
Annotations (summary, description, runbook) are content, not identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AlertStatus = Literal["firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """16 hex digits identifying a label set; empty label values are dropped, as Prometheus does."""
    text = "\xff".join(f"{key}\xfe{value}" for key, value in sorted(labels.items()) if value)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Alert:
    """One alert as reported at one moment by a rule or an external sender."""

    labels: Mapping[str, str]
    starts_at: datetime
    status: AlertStatus = "firing"
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: datetime | None = None
    source: str = "qwq"
    generator_url: str = ""
    value: float | None = None

    @property
    def fingerprint(self) -> str:
        """Identity of the alert: a hash of its labels."""
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        """The ``alertname`` label (empty if the sender gave none)."""
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """What the pipeline decided to send: one aggregation group's alerts, to one receiver."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    ts: datetime

    @property
    def status(self) -> AlertStatus:
        """``firing`` while any alert of the group fires, else ``resolved``."""
        return "firing" if self.firing else "resolved"


__all__: Sequence[str] = ["Alert", "AlertStatus", "Notification", "fingerprint"]
