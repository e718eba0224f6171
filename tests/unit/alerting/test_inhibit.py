"""Inhibition mutes targets while a matching source fires, with Alertmanager's ``equal`` and two-sided rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from analytics.alerting.incidents import Topology
from analytics.alerting.inhibit import Inhibitor, InhibitRuleSpec
from analytics.alerting.model import Alert

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert(labels, T0, status=status)  # type: ignore[arg-type]


HOST_DOWN = alert(alertname="HostDown", host="db1", severity="critical")
TOPOLOGY = Topology([("host=db1", "container=web"), ("container=web", "site=shop")])


@pytest.mark.parametrize(
    ("target", "muted"),
    [
        (alert(alertname="ContainerDown", host="db1", container="pg"), True),
        (alert(alertname="SiteDown", host="db1", site="blog"), True),
        (alert(alertname="SiteDown", site="shop"), True),  # no host label: below db1 in the topology
        (alert(alertname="ContainerDown", container="web"), True),
        (alert(alertname="ContainerDown", host="db2", container="pg"), False),  # another host
        (alert(alertname="SiteDown", site="elsewhere"), False),
        (alert(alertname="HighLoad", host="db1"), False),  # the defaults mute containers and sites only
        (HOST_DOWN, False),
    ],
)
def test_a_host_down_mutes_its_containers_and_sites_by_default(target: Alert, muted: bool) -> None:
    index = Inhibitor(topology=TOPOLOGY).index([HOST_DOWN, target])
    assert (index.inhibited_by(target) == HOST_DOWN.fingerprint) is muted


def test_only_firing_sources_inhibit() -> None:
    container = alert(alertname="ContainerDown", host="db1", container="pg")
    index = Inhibitor().index([alert(status="resolved", **HOST_DOWN.labels), container])
    assert index.inhibited_by(container) is None


CRITICAL_MUTES_WARNING = InhibitRuleSpec(
    source_matchers=['severity="critical"'], target_matchers=['severity=~"warning|critical"'], equal=["alertname"]
)


def test_equal_labels_must_agree_and_absent_equals_absent() -> None:
    rule = InhibitRuleSpec(source_matchers=["a=src"], target_matchers=["a=tgt"], equal=["zone", "rack"])
    inhibitor = Inhibitor([rule])
    source = alert(a="src", zone="z1")
    index = inhibitor.index([source])
    assert index.inhibited_by(alert(a="tgt", zone="z1")) == source.fingerprint  # rack absent on both
    assert index.inhibited_by(alert(a="tgt", zone="z1", rack="r1")) is None
    assert index.inhibited_by(alert(a="tgt", zone="z2")) is None


def test_alerts_matching_both_sides_do_not_mute_each_other() -> None:
    first = alert(alertname="Disk", severity="critical", host="a")
    second = alert(alertname="Disk", severity="critical", host="b")
    warning = alert(alertname="Disk", severity="warning", host="c")
    index = Inhibitor([CRITICAL_MUTES_WARNING]).index([first, second, warning])
    assert index.inhibited_by(first) is None and index.inhibited_by(second) is None
    assert index.inhibited_by(warning) in (first.fingerprint, second.fingerprint)


def test_a_source_only_alert_still_mutes_an_alert_matching_both_sides() -> None:
    rule = InhibitRuleSpec(source_matchers=['severity=~"critical|page"'], target_matchers=['severity="critical"'])
    page = alert(alertname="X", severity="page")
    critical = alert(alertname="Y", severity="critical")
    index = Inhibitor([rule]).index([page, critical])
    assert index.inhibited_by(critical) == page.fingerprint


def test_inhibit_rules_validate_their_matchers() -> None:
    with pytest.raises(ValidationError):
        InhibitRuleSpec(source_matchers=["a=~("], target_matchers=["b=1"])
    with pytest.raises(ValidationError):
        InhibitRuleSpec.model_validate({"source_matchers": [], "target_matchers": [], "unknown": 1})
