"""The store: samples, series, metric metadata and events in DuckDB, read back as polars frames."""

from qwq_core.store.base import QuerySpec, Store
from qwq_core.store.local import LocalStore

__all__ = ["LocalStore", "QuerySpec", "Store"]
