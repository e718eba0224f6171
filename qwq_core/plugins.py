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
    """The plugins of one entry-point group, loaded lazily on first use."""

    def __init__(self, group: str, *, extra: dict[str, T] | None = None) -> None:
        """``extra`` registers plugins directly (tests, embedding applications); they win over entry points."""
        self.group = group
        self._extra = dict(extra or {})
        self._plugins: dict[str, Plugin[T]] | None = None

    def _load(self) -> dict[str, Plugin[T]]:
        if self._plugins is None:
            plugins = {ep.name: self._load_one(ep) for ep in entry_points(group=self.group)}
            for name, obj in self._extra.items():
                plugins[name] = Plugin(name, repr(obj), None, obj)
            self._plugins = plugins
        return self._plugins

    def _load_one(self, entry: EntryPoint) -> Plugin[T]:
        distribution = entry.dist.name if entry.dist else None
        try:
            return Plugin(entry.name, entry.value, distribution, cast(T, entry.load()))
        except Exception as exc:  # any import failure disables just this plugin
            log.warning("%s plugin %r disabled: %s", self.group, entry.name, exc)
            return Plugin(entry.name, entry.value, distribution, None, f"{type(exc).__name__}: {exc}")

    def plugins(self) -> list[Plugin[T]]:
        """Every plugin of the group, enabled or not, sorted by name."""
        return sorted(self._load().values(), key=lambda p: p.name)

    def get(self, name: str) -> T:
        """The loaded plugin called ``name``; :class:`NotFoundError` says why when it cannot be had."""
        plugin = self._load().get(name)
        if plugin is None:
            known = ", ".join(sorted(self._load())) or "none"
            raise NotFoundError(f"unknown {self.group} plugin {name!r} (available: {known})")
        if plugin.loaded is None:
            raise NotFoundError(f"{self.group} plugin {name!r} is disabled: {plugin.error}")
        return plugin.loaded
