"""Invariants of duration parsing and selector matching."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwq_core.errors import QueryError
from qwq_core.selectors import Matcher, Selector
from qwq_core.timeutil import ceil_time, floor_time, format_duration, parse_duration

durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)).map(
    lambda d: timedelta(milliseconds=d // timedelta(milliseconds=1))
)


@given(durations)
def test_format_then_parse_is_identity(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration


@given(st.lists(st.tuples(st.integers(1, 500), st.sampled_from(["ms", "s", "m", "h", "d", "w", "y"])), min_size=1))
def test_compound_durations_add_up(terms: list[tuple[int, str]]) -> None:
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    text = "".join(f"{n}{u}" for n, u in terms)
    assert parse_duration(text).total_seconds() == pytest.approx(sum(n * unit[u] for n, u in terms))


@pytest.mark.parametrize("bad", ["", "5", "-5s", "5 parsecs", "1h-", "h", "1.2.3s", "nan", "inf"])
def test_bad_durations_name_the_input(bad: str) -> None:
    if bad == "5":  # a bare number is seconds
        assert parse_duration(bad) == timedelta(seconds=5)
        return
    with pytest.raises(QueryError, match="duration"):
        parse_duration(float(bad) if bad in ("nan", "inf") else bad)


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=7), timedelta(hours=1)]),
)
def test_floor_and_ceil_bracket_the_time_on_the_grid(moment: datetime, step: timedelta) -> None:
    low, high = floor_time(moment, step), ceil_time(moment, step)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert low <= moment <= high and high - low in (timedelta(0), step)
    assert (low - epoch) % step == timedelta(0) and (high - epoch) % step == timedelta(0)


# ---- selectors -------------------------------------------------------------------------------------------
label_values = st.sampled_from(["", "a", "b", "total", "x.y", 'q"uote'])
series_rows = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["cpu", "cpu_total", "mem"]), "l1": label_values, "l2": label_values}
    ),
    min_size=1,
    max_size=30,
)
matchers = st.builds(
    Matcher,
    st.sampled_from(["l1", "l2", "absent"]),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(["", "a", "b", "total", "a|b", ".*", "t.*", 'q"uote']),
)


def reference(matcher: Matcher, row: dict[str, str]) -> bool:
    """Prometheus semantics written out plainly: an absent label is the empty string."""
    value = row.get(matcher.label, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = re.fullmatch(matcher.value, value) is not None
    return found if matcher.op == "=~" else not found


@given(series_rows, st.lists(matchers, max_size=3), st.sampled_from([None, "cpu", "cpu*", "*"]))
def test_selector_matches_exactly_what_prometheus_semantics_say(
    rows: list[dict[str, str]], found: list[Matcher], name: str | None
) -> None:
    frame = pl.DataFrame(rows).with_columns(pl.col("l1", "l2").replace("", None))
    selector = Selector(name, tuple(found))
    got = selector.filter(frame.with_row_index("i"))["i"].to_list()

    def name_ok(row_name: str) -> bool:
        return name is None or re.fullmatch(name.replace("*", ".*"), row_name) is not None

    expected = [i for i, row in enumerate(rows) if name_ok(row["name"]) and all(reference(m, row) for m in found)]
    assert got == expected


@given(st.sampled_from(["cpu", "host_*", None]), st.lists(matchers, max_size=3))
def test_selector_text_round_trips(name: str | None, found: list[Matcher]) -> None:
    selector = Selector(name, tuple(found))
    if name is None and not found:
        return
    assert Selector.parse(str(selector)) == selector


@pytest.mark.parametrize(
    ("text", "position"),
    [('cpu{mode="user"', 15), ("cpu{mode=user}", 9), ("cpu{1x='a'}", 4), ("cpu extra", 4), ("{}", 2)],
)
def test_bad_selectors_say_where(text: str, position: int) -> None:
    with pytest.raises(QueryError, match=f"at position {position}"):
        Selector.parse(text)


def test_invalid_regex_is_a_query_error() -> None:
    with pytest.raises(QueryError, match="regular expression"):
        Selector.parse('cpu{mode=~"(unclosed"}')
