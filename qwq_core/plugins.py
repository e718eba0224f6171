"""Plugin registries over entry-point groups (``qwq.collectors`` now, ``qwq.actions`` later).

Built-ins are registered in qwq's own ``pyproject.toml`` exactly as a third-party package would register
its plugins. A plugin that fails to import (a missing optional dependency, a bug) is listed as disabled
with the reason instead of breaking qwq.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, cast

from qwq_core.errors import NotFoundError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Plugin(Generic[T]):
    """One registered plugin: where it comes from, and either the loaded object or why it is disabled."""

    name: str
    target: str
    distribution: str | None
    loaded: T | None
    error: str | None = None

    @property
    def enabled(self) -> bool:
        """True when the plugin imported cleanly."""
        return self.error is None


class Registry(Generic[T]):
    """The plugins of one entry-point group, each imported on first use.

    :meth:`get` imports only the plugin asked for — a collector type nobody configured costs nothing, not
    even its driver's import — while :meth:`plugins` imports them all (to list them with their state).
    """

    def __init__(self, group: str, *, extra: dict[str, T] | None = None) -> None:
        """``extra`` registers plugins directly (tests, embedding applications); they win over entry points."""
        self.group = group
        self._extra = {name: Plugin(name, repr(obj), None, obj) for name, obj in (extra or {}).items()}
        self._entries: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, Plugin[T]] = {}

    def _names(self) -> dict[str, EntryPoint]:
        if self._entries is None:
            self._entries = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entries

    def _plugin(self, name: str) -> Plugin[T] | None:
        if name in self._extra:
            return self._extra[name]
        if name not in self._loaded and name in self._names():
            self._loaded[name] = self._load_one(self._names()[name])
        return self._loaded.get(name)

    def _load_one(self, entry: EntryPoint) -> Plugin[T]:
        distribution = entry.dist.name if entry.dist else None
        try:
            return Plugin(entry.name, entry.value, distribution, cast(T, entry.load()))
        except Exception as exc:  # any import failure disables just this plugin
            log.warning("%s plugin %r disabled: %s", self.group, entry.name, exc)
            return Plugin(entry.name, entry.value, distribution, None, f"{type(exc).__name__}: {exc}")

    def plugins(self) -> list[Plugin[T]]:
        """Every plugin of the group, enabled or not, sorted by name (imports them all)."""
        names = sorted({*self._names(), *self._extra})
        return [plugin for name in names if (plugin := self._plugin(name)) is not None]

    def get(self, name: str) -> T:
        """The loaded plugin called ``name``; :class:`NotFoundError` says why when it cannot be had."""
        plugin = self._plugin(name)
        if plugin is None:
            known = ", ".join(sorted({*self._names(), *self._extra})) or "none"
            raise NotFoundError(f"unknown {self.group} plugin {name!r} (available: {known})")
        if plugin.loaded is None:
            raise NotFoundError(f"{self.group} plugin {name!r} is disabled: {plugin.error}")
        return plugin.loaded
