"""The routing tree: which receivers an alert goes to and how it is grouped there, as in Alertmanager.

A route has label matchers, a receiver and grouping settings (``group_by``, ``group_wait``,
``group_interval``, ``repeat_interval``); children inherit whatever they leave unset. An alert enters at the
root (which matches everything) and descends depth-first: it is taken by the first child that matches
(recursively), and also by later siblings only while the matching child has ``continue = true``. If no child
matches, the route itself takes it. ``group_by = ["..."]`` groups by every label.

Matchers are Alertmanager's: ``severity=~"critical|error"``, ``host!="db1"`` — one per list item, or a
whole selector ``{severity="critical", host="db1"}``; unquoted values (``severity=critical``) are accepted
too. They are :class:`qwq_core.selectors.Matcher` objects, and an absent label compares as ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qwq_core.errors import QueryError
from qwq_core.model import series_key
from qwq_core.selectors import Matcher, Selector
from qwq_core.settings import Duration

GROUP_BY_ALL = "..."
_UNQUOTED = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


# ---- matchers ------------------------------------------------------------------------------------------
def parse_matchers(texts: str | Sequence[str]) -> tuple[Matcher, ...]:
    """Matchers from a selector ``{a="b", c=~"d"}`` or a list of single matchers (``a="b"``, ``a=b``).

    Raises :class:`QueryError` naming the text that does not parse.
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    found: list[Matcher] = []
    for text in items:
        found.extend(_parse_one(text))
    return tuple(found)


def _parse_one(text: str) -> tuple[Matcher, ...]:
    stripped = text.strip()
    if stripped.startswith("{"):
        return Selector.parse(stripped).matchers
    try:
        return Selector.parse("{" + stripped + "}").matchers
    except QueryError:
        unquoted = _UNQUOTED.match(stripped)
        if unquoted is None or unquoted.group(3)[:1] in ("'", '"'):
            raise
        label, op, value = unquoted.groups()
        return (Matcher(label, op, value),)  # type: ignore[arg-type]  # op is one of the four by the regex


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matcher_matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    """True if ``labels`` satisfy ``matcher`` (an absent label is the empty string)."""
    value = labels.get(matcher.label) or ""
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    found = _regex(matcher.pattern).match(value) is not None
    return found if matcher.op == "=~" else not found


def labels_match(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """True if ``labels`` satisfy every matcher (so an empty list matches everything)."""
    return all(matcher_matches(m, labels) for m in matchers)


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """``{a="b",c=~"d"}``: the selector text of ``matchers``, which :func:`parse_matchers` reads back."""
    return "{" + ",".join(map(str, matchers)) + "}"


# ---- configuration -------------------------------------------------------------------------------------
class RouteSpec(BaseModel):
    """One node of the routing tree as configured; unset settings are inherited from the parent."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    receiver: str | None = Field(default=None, description="receiver name; inherited when unset")
    matchers: list[str] = Field(default_factory=list, description='label matchers, e.g. severity=~"critical"')
    continue_: bool = Field(default=False, alias="continue", description="keep matching later siblings")
    group_by: list[str] | None = Field(default=None, description='labels to group by; ["..."] = all labels')
    group_wait: Duration | None = Field(default=None, description="wait before a new group's first message")
    group_interval: Duration | None = Field(default=None, description="wait between messages about changes")
    repeat_interval: Duration | None = Field(default=None, description="re-send an unchanged group after")
    routes: list[RouteSpec] = Field(default_factory=list, description="child routes, tried in order")

    @field_validator("matchers")
    @classmethod
    def _matchers_parse(cls, value: list[str]) -> list[str]:
        try:
            parse_matchers(value)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by_labels(cls, value: list[str] | None) -> list[str] | None:
        if value and GROUP_BY_ALL in value and len(value) > 1:
            raise ValueError('"..." groups by all labels and cannot be combined with label names')
        bad = [v for v in value or [] if v != GROUP_BY_ALL and not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", v)]
        if bad:
            raise ValueError(f"invalid label names {bad}")
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be greater than zero")
        return value


def validate_root(spec: RouteSpec) -> None:
    """Alertmanager's rules for the root route: it names a receiver and matches everything."""
    if not spec.receiver:
        raise QueryError("the root route must name a receiver")
    if spec.matchers:
        raise QueryError("the root route must not have matchers: every alert enters there")


# ---- the resolved tree ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """A route with every setting resolved (inherited or defaulted) and its matchers parsed."""

    key: str
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None  # None: group by all labels
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    routes: tuple[Route, ...] = ()

    @classmethod
    def build(cls, spec: RouteSpec) -> Route:
        """The tree for root ``spec``, with Alertmanager's defaults (30s, 5m, 4h, no grouping labels)."""
        validate_root(spec)
        defaults = cls(
            key="",
            receiver=spec.receiver or "",
            matchers=(),
            continue_=False,
            group_by=(),
            group_wait=timedelta(seconds=30),
            group_interval=timedelta(minutes=5),
            repeat_interval=timedelta(hours=4),
        )
        return _resolve(spec, defaults, "{}")

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with ``labels``, in tree order; empty if this route does not match."""
        if not labels_match(self.matchers, labels):
            return []
        taken: list[Route] = []
        for child in self.routes:
            found = child.match(labels)
            taken.extend(found)
            if found and not child.continue_:
                break
        return taken or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert's group on this route is identified by (absent ones left out)."""
        if self.group_by is None:
            return {k: v for k, v in labels.items() if v}
        return {k: labels[k] for k in self.group_by if labels.get(k)}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Identity of the aggregation group an alert with ``labels`` joins: ``{route}:{group labels}``."""
        return f"{self.key}:{series_key('', self.group_labels(labels))}"

    def walk(self) -> Iterator[Route]:
        """This route and all below it, depth-first."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def receivers(self) -> set[str]:
        """Every receiver the tree names (for checking them against the configured receivers)."""
        return {route.receiver for route in self.walk()}


def _resolve(spec: RouteSpec, parent: Route, key: str) -> Route:
    group_by: tuple[str, ...] | None = parent.group_by
    if spec.group_by is not None:
        group_by = None if spec.group_by == [GROUP_BY_ALL] else tuple(spec.group_by)
    node = Route(
        key=key,
        receiver=spec.receiver or parent.receiver,
        matchers=parse_matchers(spec.matchers),
        continue_=spec.continue_,
        group_by=group_by,
        group_wait=spec.group_wait if spec.group_wait is not None else parent.group_wait,
        group_interval=spec.group_interval or parent.group_interval,
        repeat_interval=spec.repeat_interval or parent.repeat_interval,
    )
    child_keys = [f"{key}/{format_matchers(parse_matchers(child.matchers))}" for child in spec.routes]
    children = tuple(
        # siblings with the same matchers get their position appended so that every key is unique
        _resolve(child, node, f"{ck}/{i}" if child_keys.count(ck) > 1 else ck)
        for i, (child, ck) in enumerate(zip(spec.routes, child_keys, strict=True))
    )
    return replace(node, routes=children)


__all__: Sequence[str] = [
    "GROUP_BY_ALL",
    "Route",
    "RouteSpec",
    "format_matchers",
    "labels_match",
    "matcher_matches",
    "parse_matchers",
    "validate_root",
]
