"""Invariants of the noise-reduction pipeline (issue #4), checked with generated alert streams.

1. grouping is independent of arrival order;
2. a group is never notified twice within ``repeat_interval`` unless its firing set grew (or, with
   ``send_resolved``, the notification carries a resolve);
3. a resolve is sent iff a firing notification was sent and ``send_resolved`` is on;
4. a silence mutes exactly the alerts its matchers match;
plus dedup counts, inhibition, and incidents independent of arrival order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analytics.alerting.model import Alert, Notification
from analytics.alerting.pipeline import Pipeline, PipelineSpec
from analytics.alerting.routing import parse_matchers
from qwq_core.selectors import Matcher, Selector

T0 = datetime(2026, 1, 1, tzinfo=UTC)
GROUP_WAIT, GROUP_INTERVAL, REPEAT = 30, 300, 1200  # seconds
NAMES, HOSTS, SEVERITIES = ["CPU", "Disk", "Mem"], ["h1", "h2", "h3"], ["warning", "critical"]
ROUTE = {
    "receiver": "ops",
    "group_by": ["host"],
    "group_wait": f"{GROUP_WAIT}s",
    "group_interval": f"{GROUP_INTERVAL}s",
    "repeat_interval": f"{REPEAT}s",
    "routes": [
        {"matchers": ['severity="critical"'], "receiver": "pager", "group_by": ["alertname"], "continue": True},
        {"matchers": ['alertname=~"CPU|Mem"'], "receiver": "ops"},
    ],
}


def spec(**extra: object) -> PipelineSpec:
    """Routes above; flap detection off and no inhibition unless a property is about them."""
    return PipelineSpec.model_validate({"route": ROUTE, "flapping": {"enabled": False}, "inhibit_rules": [], **extra})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


alerts = st.builds(
    lambda name, host, severity: Alert({"alertname": name, "host": host, "severity": severity}, T0),
    st.sampled_from(NAMES),
    st.sampled_from(HOSTS),
    st.sampled_from(SEVERITIES),
)
distinct_alerts = st.lists(alerts, min_size=1, max_size=12, unique_by=lambda a: a.fingerprint)


def key(note: Notification) -> tuple[object, ...]:
    return (note.receiver, note.group_key, dict(note.group_labels), note.firing, note.resolved, note.ts)


# ---- 1. arrival order ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(distinct_alerts, st.integers(0, 3), st.data())
def test_grouping_is_independent_of_arrival_order(batch: list[Alert], repeats: int, data: st.DataObject) -> None:
    """The same alerts (duplicates too) arriving in any order within group_wait give the same notifications."""
    stream = batch + batch[:repeats]
    moments = st.lists(st.integers(0, GROUP_WAIT - 1), min_size=len(stream), max_size=len(stream))
    times = sorted(data.draw(moments, label="arrival times"))
    outcomes = []
    for order in (stream, data.draw(st.permutations(stream), label="another order")):
        pipeline = Pipeline(spec())
        for alert, t in zip(order, times, strict=True):
            pipeline.ingest([alert], at(t))
        outcomes.append(sorted(map(key, pipeline.tick(at(2 * GROUP_WAIT)))))
    assert outcomes[0] == outcomes[1]
    assert {a.fingerprint for note in outcomes[0] for a in note[3]} == {a.fingerprint for a in batch}  # type: ignore[attr-defined]


# ---- a random stream of firing/resolving reports -------------------------------------------------------
steps = st.lists(
    st.tuples(st.integers(1, 400), st.integers(0, 5), st.booleans()),  # (seconds later, which alert, fires)
    min_size=1,
    max_size=25,
)
pool = st.lists(alerts, min_size=6, max_size=6, unique_by=lambda a: a.fingerprint)


def simulate(
    pipeline: Pipeline, pool_: list[Alert], steps_: list[tuple[int, int, bool]], resolve_all: bool
) -> tuple[list[Notification], dict[str, list[float]]]:
    """Play the steps, ticking every 10 s; notifications and, per alert, the times it started firing."""
    notes: list[Notification] = []
    fired_at: dict[str, list[float]] = defaultdict(list)
    firing: set[str] = set()
    t = 0.0
    clock = 0.0

    def advance(to: float) -> None:
        nonlocal clock
        while clock + 10 <= to:
            clock += 10
            notes.extend(pipeline.tick(at(clock)))

    for delta, index, fires in steps_:
        t += delta
        advance(t)
        alert = pool_[index]
        if fires and alert.fingerprint not in firing:
            fired_at[alert.fingerprint].append(t)
        (firing.add if fires else firing.discard)(alert.fingerprint)
        pipeline.ingest([replace(alert, status="firing" if fires else "resolved")], at(t))
        notes.extend(pipeline.tick(at(t)))
    if resolve_all:
        t += 1
        pipeline.ingest([replace(pool_[i], status="resolved") for i in range(len(pool_))], at(t))
    advance(t + 3 * GROUP_INTERVAL)
    return notes, fired_at


def by_group(notes: list[Notification]) -> dict[str, list[Notification]]:
    groups: dict[str, list[Notification]] = defaultdict(list)
    for note in notes:
        groups[note.group_key].append(note)
    return groups


# ---- 2. repeat_interval ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(pool, steps, st.booleans())
def test_no_group_is_notified_twice_within_repeat_interval_unless_its_firing_set_grew(
    pool_: list[Alert], steps_: list[tuple[int, int, bool]], send_resolved: bool
) -> None:
    pipeline = Pipeline(spec(), send_resolved={"ops": send_resolved, "pager": send_resolved})
    notes, fired_at = simulate(pipeline, pool_, steps_, resolve_all=False)
    for group_notes in by_group(notes).values():
        for first, second in zip(group_notes, group_notes[1:], strict=False):
            elapsed = second.ts - first.ts
            if elapsed >= timedelta(seconds=REPEAT):
                continue
            start = (first.ts - T0).total_seconds()
            # Grew: an alert the first did not list as firing, or one that fired again since (one firing again
            # at the very instant of the first notification is absent from it).
            before = {a.fingerprint for a in first.firing}
            grew = any(
                a.fingerprint not in before or any(t > start for t in fired_at[a.fingerprint]) for a in second.firing
            )
            assert grew or (send_resolved and second.resolved), (first, second)


# ---- 3. resolves -------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(pool, steps, st.booleans())
def test_a_resolve_is_sent_iff_a_firing_notification_was_sent_and_send_resolved_is_on(
    pool_: list[Alert], steps_: list[tuple[int, int, bool]], send_resolved: bool
) -> None:
    pipeline = Pipeline(spec(), send_resolved={"ops": send_resolved, "pager": send_resolved})
    notes, _ = simulate(pipeline, pool_, steps_, resolve_all=True)
    for group_notes in by_group(notes).values():
        mentions: dict[str, list[str]] = defaultdict(list)  # alert -> "firing"/"resolved", in order
        for note in group_notes:
            for alert in note.firing:
                mentions[alert.fingerprint].append("firing")
            for alert in note.resolved:
                mentions[alert.fingerprint].append("resolved")
        for sequence in mentions.values():
            if not send_resolved:
                assert "resolved" not in sequence
                continue
            assert sequence[0] == "firing"  # a resolve only after a firing notification ...
            assert sequence[-1] == "resolved"  # ... and every firing notification is followed by one
            assert all(not (a == b == "resolved") for a, b in zip(sequence, sequence[1:], strict=False))


# ---- 4. silences -------------------------------------------------------------------------------------------
values = {"alertname": NAMES + ["C.*", "CPU|Mem"], "host": HOSTS + ["h[12]"], "severity": SEVERITIES}
matchers = st.lists(
    st.sampled_from(sorted(values)).flatmap(
        lambda label: st.builds(
            lambda op, value: Matcher(label, op, value),
            st.sampled_from(["=", "!=", "=~", "!~"]),
            st.sampled_from(values[label]),
        )
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=80, deadline=None)
@given(distinct_alerts, matchers)
def test_a_silence_mutes_exactly_the_alerts_its_matchers_match(batch: list[Alert], silence: list[Matcher]) -> None:
    text = "{" + ",".join(map(str, silence)) + "}"
    assert parse_matchers(text) == tuple(silence)
    frame = pl.DataFrame([dict(a.labels) for a in batch])
    assume(Selector(None, tuple(silence)).filter(pl.DataFrame({"alertname": [""]})).height == 0)
    expected = set(
        Selector(None, tuple(silence)).filter(frame.with_row_index("i"))["i"].to_list()
    )  # the store's own matcher semantics, in polars, as the oracle
    pipeline = Pipeline(spec())
    pipeline.silence(text, now=at(0), duration=timedelta(hours=1))
    pipeline.ingest(batch, at(0))
    notes = pipeline.tick(at(GROUP_WAIT))
    notified = {a.fingerprint for n in notes for a in n.firing}
    muted = {batch[i].fingerprint for i in expected}
    assert notified == {a.fingerprint for a in batch} - muted
    assert {v.record.fingerprint for v in pipeline.alerts(at(GROUP_WAIT), "suppressed")} == muted


# ---- dedup counts ------------------------------------------------------------------------------------------
reports = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["firing", "resolved"]), st.sampled_from([None, 1.0, 2.0])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(pool, reports)
def test_dedup_counts_every_report_as_new_duplicate_or_update(
    pool_: list[Alert], reports_: list[tuple[int, str, float | None]]
) -> None:
    pipeline = Pipeline(spec())
    last: dict[str, tuple[str, float | None]] = {}
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # received, duplicates, updates
    status_changes = 0
    for i, (index, status, value) in enumerate(reports_):
        alert = replace(pool_[index], status=status, value=value)  # type: ignore[arg-type]
        fp = alert.fingerprint
        counts = expected[fp]
        counts[0] += 1
        if fp in last:
            counts[1 if last[fp] == (status, value) else 2] += 1
        if fp not in last or last[fp][0] != status:
            status_changes += 1
        last[fp] = (status, value)
        pipeline.ingest([alert], at(i))
    for view in pipeline.alerts(at(len(reports_))):
        record = view.record
        assert [record.received, record.duplicates, record.updates] == expected[record.fingerprint]
    totals = pipeline.registry.totals
    assert totals.received == len(reports_)
    assert totals.duplicates == sum(c[1] for c in expected.values())
    assert totals.updates == sum(c[2] for c in expected.values())
    received_events = [e for e in pipeline.drain_events() if e.kind == "alert.received"]
    assert len(received_events) == status_changes  # one event per transition, none per duplicate


# ---- inhibition --------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.sampled_from(HOSTS)),
    st.lists(st.tuples(st.sampled_from(HOSTS), st.sampled_from(["container", "site"]), st.integers(0, 2)), max_size=10),
    st.sets(st.sampled_from(HOSTS)),
)
def test_a_host_down_mutes_exactly_its_containers_and_sites(
    down: set[str], targets: list[tuple[str, str, int]], resolved_down: set[str]
) -> None:
    """Default rules; site alerts carry no host label and are tied to their host by the topology only."""
    topology = [(f"host={h}", f"site={h}-s{i}") for h in HOSTS for i in range(3)]
    pipeline = Pipeline(
        PipelineSpec.model_validate(
            {"route": ROUTE, "flapping": {"enabled": False}, "incidents": {"topology": topology}}
        )
    )
    sources = [
        Alert({"alertname": "HostDown", "host": h}, T0, status="resolved" if h in resolved_down else "firing")
        for h in sorted(down)
    ]
    batch = [
        Alert({"alertname": "ContainerDown", "host": h, "container": f"c{i}"}, T0)
        if kind == "container"
        else Alert({"alertname": "SiteDown", "site": f"{h}-s{i}"}, T0)
        for h, kind, i in targets
    ]
    pipeline.ingest(sources + batch, at(0))
    notified = {a.fingerprint for n in pipeline.tick(at(GROUP_WAIT)) for a in n.firing}
    firing_down = down - resolved_down
    for (host, _, _), alert in zip(targets, batch, strict=True):
        assert (alert.fingerprint in notified) is (host not in firing_down), alert.labels


# ---- incidents -----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["host", "container", "site"]), st.integers(0, 5)),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    st.data(),
)
def test_incidents_do_not_depend_on_arrival_order(parts: list[tuple[str, int]], data: st.DataObject) -> None:
    """Alerts are split into incidents by their relations alone: the same alerts in any order, same incidents."""
    edges = [(f"host=h{i % 2}", f"container=c{i}") for i in range(6)] + [
        (f"container=c{i}", f"site=s{i}") for i in range(6)
    ]
    made = [
        Alert({"alertname": kind, kind: f"h{i % 2}" if kind == "host" else f"{kind[0]}{i}"}, T0) for kind, i in parts
    ]
    batch = list({a.fingerprint: a for a in made}.values())
    partitions = []
    for order in (batch, data.draw(st.permutations(batch), label="another order")):
        pipeline = Pipeline(PipelineSpec.model_validate({"route": ROUTE, "incidents": {"topology": edges}}))
        for t, alert in enumerate(order):
            pipeline.ingest([alert], at(t))
        incidents = [i for i in pipeline.incidents() if i.merged_into is None]
        partitions.append(sorted(sorted(i.alerts) for i in incidents))
    assert partitions[0] == partitions[1]
    assert sorted(fp for part in partitions[0] for fp in part) == sorted(a.fingerprint for a in batch)
