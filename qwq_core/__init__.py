"""qwq's core library: configuration, the DuckDB store and its query API, events and plugin contracts.

In a notebook::

    import qwq_core
    store = qwq_core.connect()                       # the running `qwq up`, else the local store file
    cpu = store.query("host_cpu_usage_ratio", labels={"cpu": "total"}, since="1h", step="1m")
"""

__version__ = "0.1.0"

from qwq_core.connect import connect
from qwq_core.errors import (
    CollectorError,
    ConfigError,
    NotFoundError,
    QueryError,
    QwqError,
    RemoteError,
    StoreError,
    StoreLockedError,
)
from qwq_core.model import Event, MetricInfo
from qwq_core.store import LocalStore, QuerySpec, Store

__all__ = [
    "CollectorError",
    "ConfigError",
    "Event",
    "LocalStore",
    "MetricInfo",
    "NotFoundError",
    "QueryError",
    "QuerySpec",
    "QwqError",
    "RemoteError",
    "Store",
    "StoreError",
    "StoreLockedError",
    "__version__",
    "connect",
]
