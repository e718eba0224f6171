"""The qwq exception tree.

Every error qwq raises on purpose derives from :class:`QwqError`; foreign exceptions (DuckDB, httpx,
pydantic, OS errors) are translated where they enter qwq, with the original kept as ``__cause__``::

    QwqError
    ├── ConfigError        invalid configuration: carries the file, the key and the reason
    ├── QueryError         a query or selector that cannot be answered as asked (bad metric, step, agg, SQL)
    ├── NotFoundError      a named thing (collector type, store file, server) does not exist
    ├── StoreError         the store cannot be opened, migrated, written or read
    │   └── StoreLockedError  another process holds the store's write lock
    ├── CollectorError     a collector failed or timed out (recorded as data, never raised out of the scheduler)
    ├── AuthError          a request to the REST API lacked the right bearer token
    ├── ActionError        an action could not plan or apply: carries the target and what was rolled back
    └── RemoteError        a running qwq server answered with an error or could not be reached

One mapping (:data:`HTTP_STATUS`, :func:`exit_code`) turns them into HTTP status codes and CLI exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class QwqError(Exception):
    """Base class of every error qwq raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration source: where (source and dotted key) and why."""

    source: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.reason}" if self.key else f"{self.source}: {self.reason}"


class ConfigError(QwqError):
    """Invalid configuration. ``issues`` lists every problem found, each as ``file: key: reason``."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class QueryError(QwqError):
    """A query, selector, duration or SQL statement that cannot be answered as asked."""


class NotFoundError(QwqError):
    """A named thing (collector type, store, server, metric) does not exist."""


class StoreError(QwqError):
    """The store cannot be opened, migrated, written or read."""


class StoreLockedError(StoreError):
    """Another process (usually a running ``qwq up``) holds the store's single-writer lock."""


class CollectorError(QwqError):
    """A collector raised or timed out; the scheduler records it as an event and an error count."""


class AuthError(QwqError):
    """A request to the REST API lacked the configured bearer token."""


class ActionError(QwqError):
    """An action could not plan or apply (a conflict, a missing dependency, a failed verification, a timeout).

    ``target`` is the action's lock key when known; ``rolled_back`` lists what apply undid before raising.
    """

    def __init__(self, message: str, *, target: str | None = None, rolled_back: Sequence[str] = ()) -> None:
        self.target = target
        self.rolled_back = tuple(rolled_back)
        super().__init__(message)


class RemoteError(QwqError):
    """A running qwq server could not be reached or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


HTTP_STATUS: dict[type[QwqError], int] = {
    ConfigError: 400,
    QueryError: 400,
    NotFoundError: 404,
    StoreLockedError: 503,
    StoreError: 500,
    CollectorError: 500,
    AuthError: 401,
    ActionError: 409,
    RemoteError: 502,
}


def http_status(error: QwqError) -> int:
    """The HTTP status code for ``error``: the entry of its nearest class in :data:`HTTP_STATUS`."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def exit_code(error: QwqError) -> int:
    """CLI exit code: 2 for bad input (config, query, unknown names), 1 for everything else."""
    return 2 if isinstance(error, ConfigError | QueryError | NotFoundError) else 1


def error_body(error: QwqError) -> dict[str, Any]:
    """The JSON body of an error response: ``{"error": {"type", "message"[, "issues"]}}``."""
    body: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ConfigError):
        body["issues"] = [vars(issue) for issue in error.issues]
    return {"error": body}
