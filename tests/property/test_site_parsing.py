"""Properties of what the website and DNS checks parse: status ranges, JSON paths, names, nameservers."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from collectors.checks import is_ip
from collectors.dns import canonical_text, format_nameserver, parse_nameserver
from collectors.http import (
    format_json_path,
    format_status_range,
    json_lookup,
    parse_json_path,
    parse_status_range,
    same_json,
)
from collectors.tls import hostname_matches, name_matches

statuses = st.integers(100, 599)
ranges = st.tuples(statuses, statuses).map(sorted).map(tuple)
parts = st.lists(st.one_of(st.integers(-5, 20), st.text(max_size=12)), max_size=6)
labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=2, max_size=5).map(".".join).filter(lambda name: not is_ip(name))  # 1.2.3.4
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@given(ranges)
def test_a_status_range_reads_back_from_its_text(statuses: tuple[int, int]) -> None:
    assert parse_status_range(format_status_range(statuses)) == statuses


@given(st.integers(1, 5), statuses)
def test_nxx_covers_exactly_its_hundred(hundred: int, status: int) -> None:
    low, high = parse_status_range(f"{hundred}xx")
    assert (low <= status <= high) == (status // 100 == hundred)


@given(parts)
def test_a_json_path_reads_back_from_its_text(path: list[Any]) -> None:
    assert parse_json_path(format_json_path(path)) == tuple(path)


@given(st.lists(st.text(max_size=8), min_size=1, max_size=5), json_values)
def test_a_value_nested_along_a_path_is_found_there(path: list[str], value: Any) -> None:
    document: Any = value
    for key in reversed(path):
        document = {key: document}
    assert same_json(json_lookup(document, parse_json_path(format_json_path(path))), value)


@given(json_values)
def test_json_values_equal_themselves_after_a_round_trip(value: Any) -> None:
    assert same_json(json.loads(json.dumps(value)), value)


@given(hostnames)
def test_a_name_matches_itself_in_any_case(host: str) -> None:
    assert name_matches(host, host.upper()) and hostname_matches(host, [host])


@given(labels, hostnames)
def test_a_wildcard_covers_exactly_one_more_label(label: str, parent: str) -> None:
    pattern = f"*.{parent}"
    assert name_matches(pattern, f"{label}.{parent}")
    assert not name_matches(pattern, parent)
    assert not name_matches(pattern, f"{label}.{label}.{parent}")


@given(st.ip_addresses(), st.integers(1, 65535))
def test_a_nameserver_reads_back_from_its_text(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    assert parse_nameserver(format_nameserver(str(address), port)) == (str(address), port)


@given(st.ip_addresses(v=6))
def test_one_address_has_one_canonical_text(address: ipaddress.IPv6Address) -> None:
    text = canonical_text("AAAA", address.exploded)
    assert canonical_text("AAAA", str(address)) == text and canonical_text("AAAA", text) == text
    assert ipaddress.ip_address(text) == address
