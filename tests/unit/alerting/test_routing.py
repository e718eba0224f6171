"""The routing tree follows Alertmanager: depth-first first match, ``continue``, inheritance, ``group_by``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from analytics.alerting.routing import Route, RouteSpec, labels_match, parse_matchers
from qwq_core.errors import QueryError
from qwq_core.selectors import Matcher

TREE = RouteSpec.model_validate(
    {
        "receiver": "default",
        "group_by": ["alertname"],
        "group_wait": "10s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True, "repeat_interval": "1h"},
            {
                "matchers": ['{team=~"db|storage"}'],
                "receiver": "dba",
                "group_by": ["..."],
                "routes": [{"matchers": ["host=db1"], "receiver": "db1-owner", "group_wait": "0s"}],
            },
            {"matchers": ['team="db"'], "receiver": "never-reached"},
        ],
    }
)
ROOT = Route.build(TREE)


def receivers(labels: dict[str, str]) -> list[str]:
    return [route.receiver for route in ROOT.match(labels)]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "X"}, ["default"]),  # no child matches: the root takes it
        ({"severity": "critical"}, ["pager"]),  # continue, but no later sibling matches
        ({"severity": "critical", "team": "db"}, ["pager", "dba"]),  # continue goes on to the next match
        ({"team": "db"}, ["dba"]),  # first match without continue stops: never-reached is not reached
        ({"team": "storage", "host": "db1"}, ["db1-owner"]),  # the deepest match is taken
        ({"team": "dbx"}, ["default"]),  # regexes are anchored
    ],
)
def test_alerts_reach_the_receivers_alertmanager_would_choose(labels: dict[str, str], expected: list[str]) -> None:
    assert receivers(labels) == expected


def test_children_inherit_unset_settings_and_override_set_ones() -> None:
    pager, dba, _ = ROOT.routes
    owner = dba.routes[0]
    assert pager.group_by == ("alertname",) and pager.group_wait == timedelta(seconds=10)
    assert pager.repeat_interval == timedelta(hours=1)
    assert dba.repeat_interval == timedelta(hours=4) and dba.group_interval == timedelta(minutes=5)
    assert dba.group_by is None and owner.group_by is None  # "..." inherited
    assert owner.group_wait == timedelta(0)  # an explicit zero is not "unset"


def test_group_keys_use_the_group_by_labels_and_route() -> None:
    pager, dba, _ = ROOT.routes
    labels = {"alertname": "DiskFull", "severity": "critical", "team": "db", "host": "db2"}
    assert pager.group_labels(labels) == {"alertname": "DiskFull"}
    assert dba.group_labels(labels) == labels  # "..." = every label
    assert pager.group_key(labels) == '{}/{severity="critical"}:{alertname="DiskFull"}'
    assert pager.group_key(labels) != ROOT.group_key(labels)
    assert len({route.key for route in ROOT.walk()}) == 5


def test_siblings_with_equal_matchers_get_distinct_keys() -> None:
    spec = RouteSpec(receiver="r", routes=[RouteSpec(matchers=["a=1"]), RouteSpec(matchers=['a="1"'])])
    first, second = Route.build(spec).routes
    assert first.key != second.key


def test_matchers_accept_alertmanager_forms() -> None:
    assert parse_matchers(['severity="critical"', "host!=db1", 'job=~"node|app"']) == (
        Matcher("severity", "=", "critical"),
        Matcher("host", "!=", "db1"),
        Matcher("job", "=~", "node|app"),
    )
    assert parse_matchers('{a="1", b!~"x.*"}') == (Matcher("a", "=", "1"), Matcher("b", "!~", "x.*"))
    assert labels_match(parse_matchers("host!=db1"), {})  # an absent label is ""
    assert not labels_match(parse_matchers('job=~"node|app"'), {"job": "nodes"})


@pytest.mark.parametrize(
    "spec",
    [
        {"receiver": "r", "matchers": ["a=~("]},
        {"receiver": "r", "group_by": ["...", "host"]},
        {"receiver": "r", "group_by": ["bad-label"]},
        {"receiver": "r", "group_interval": "0s"},
        {"receiver": "r", "unknown": 1},
    ],
)
def test_invalid_route_configuration_is_refused(spec: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RouteSpec.model_validate(spec)


def test_the_root_needs_a_receiver_and_no_matchers() -> None:
    with pytest.raises(QueryError, match="receiver"):
        Route.build(RouteSpec())
    with pytest.raises(QueryError, match="matchers"):
        Route.build(RouteSpec(receiver="r", matchers=["a=1"]))
    assert ROOT.receivers() == {"default", "pager", "dba", "db1-owner", "never-reached"}
