"""PromQL-style series selectors: ``host_cpu_usage_ratio{cpu="total",mode!~"idle|iowait"}``.

The metric-name part may use shell wildcards (``host_load*``) and may be omitted (``{host="db1"}``).
Matchers follow Prometheus: ``=``, ``!=``, ``=~`` and ``!~`` (regular expressions anchored at both ends),
and an absent label compares as the empty string. Selectors are evaluated over a frame of series with one
column per label, so the series catalogue is filtered in polars, not in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Literal

import polars as pl

from qwq_core.errors import QueryError
from qwq_core.model import LABEL_NAME

Op = Literal["=", "!=", "=~", "!~"]
_NAME_GLOB = re.compile(r"[a-zA-Z_:*?][a-zA-Z0-9_:*?]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS: tuple[Op, ...] = ("=~", "!~", "!=", "=")  # longest first
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Matcher:
    """One label matcher, e.g. ``cpu="total"``."""

    label: str
    op: Op
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                pl.Series([""]).str.contains(self.pattern)
            except pl.exceptions.PolarsError as exc:
                raise QueryError(f"invalid regular expression {self.value!r} for label {self.label}") from exc

    @property
    def pattern(self) -> str:
        """The anchored regular expression of a ``=~``/``!~`` matcher."""
        return f"^(?:{self.value})$"

    def expr(self, columns: set[str]) -> pl.Expr:
        """A boolean polars expression over a series frame whose label columns are ``columns``."""
        column = pl.col(self.label).fill_null("") if self.label in columns else pl.lit("")
        if self.op == "=":
            return column == self.value
        if self.op == "!=":
            return column != self.value
        matched = column.str.contains(self.pattern)
        return matched if self.op == "=~" else ~matched

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label}{self.op}"{escaped}"'


@dataclass(frozen=True)
class Selector:
    """A metric-name pattern (``None`` = any) and label matchers, all of which must hold."""

    name: str | None
    matchers: tuple[Matcher, ...] = ()

    @classmethod
    def parse(cls, text: str, labels: Mapping[str, str] | None = None) -> Selector:
        """Parse ``text``; ``labels`` adds equality matchers (the ``labels=`` argument of queries)."""
        selector = _Parser(text).selector()
        extra = tuple(Matcher(_label_name(k), "=", v) for k, v in (labels or {}).items())
        return cls(selector.name, selector.matchers + extra)

    @classmethod
    def build(cls, metric: str | None, labels: Mapping[str, str] | None = None) -> Selector:
        """Like :meth:`parse`, but ``metric=None`` selects every series (narrowed by ``labels``)."""
        if metric:
            return cls.parse(metric, labels)
        return cls(None, tuple(Matcher(_label_name(k), "=", v) for k, v in (labels or {}).items()))

    def expr(self, columns: set[str]) -> pl.Expr:
        """A boolean expression selecting matching rows of a series frame (``name`` + label columns)."""
        exprs = [m.expr(columns) for m in self.matchers]
        if self.name:
            exprs.append(name_glob(self.name))
        return reduce(lambda a, b: a & b, exprs, pl.lit(True))

    def filter(self, series: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``series`` (a frame with ``name`` and label columns) this selector matches."""
        return series.filter(self.expr(set(series.columns)))

    def __str__(self) -> str:
        return f"{self.name or ''}{{{','.join(map(str, self.matchers))}}}"


def parse_label_filters(pairs: list[str]) -> dict[str, str]:
    """``["cpu=total", "host=a"]`` → ``{"cpu": "total", "host": "a"}`` (the CLI's and REST's ``labels``)."""
    labels = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise QueryError(f"label filter {pair!r} is not of the form name=value")
        labels[_label_name(name.strip())] = value
    return labels


def name_glob(pattern: str, column: str = "name") -> pl.Expr:
    """A boolean expression matching ``column`` against a shell-style pattern (``*``, ``?``)."""
    if not any(c in pattern for c in "*?"):
        return pl.col(column) == pattern
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return pl.col(column).str.contains(f"^{regex}$")


def _label_name(name: str) -> str:
    if not LABEL_NAME.match(name):
        raise QueryError(f"invalid label name {name!r}")
    return name


class _Parser:
    """Recursive-descent parser for one selector; errors say where parsing stopped."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str) -> QueryError:
        return QueryError(f"invalid selector {self.text!r}: expected {expected} at position {self.pos}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def selector(self) -> Selector:
        self.skip_space()
        name_match = _NAME_GLOB.match(self.text, self.pos)
        name = None
        if name_match:
            name = name_match.group()
            self.pos = name_match.end()
        self.skip_space()
        matchers: tuple[Matcher, ...] = ()
        if self.pos < len(self.text) and self.text[self.pos] == "{":
            self.pos += 1
            matchers = self.matchers()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("end of selector")
        if name is None and not matchers:
            raise self.fail("a metric name or {label matchers}")
        return Selector(name, matchers)

    def matchers(self) -> tuple[Matcher, ...]:
        found: list[Matcher] = []
        while True:
            self.skip_space()
            if self.text.startswith("}", self.pos):
                self.pos += 1
                return tuple(found)
            label = _LABEL.match(self.text, self.pos)
            if not label:
                raise self.fail("a label name or '}'")
            self.pos = label.end()
            self.skip_space()
            op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
            if op is None:
                raise self.fail("one of = != =~ !~")
            self.pos += len(op)
            self.skip_space()
            found.append(Matcher(label.group(), op, self.string()))
            self.skip_space()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith("}", self.pos):
                raise self.fail("',' or '}'")

    def string(self) -> str:
        if self.pos >= len(self.text) or self.text[self.pos] not in "\"'":
            raise self.fail("a quoted label value")
        quote = self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and self.pos < len(self.text):
                escaped = self.text[self.pos]
                self.pos += 1
                out.append(_ESCAPES.get(escaped, "\\" + escaped))
            else:
                out.append(char)
        raise self.fail(f"closing {quote}")
