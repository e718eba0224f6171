"""The app store: Compose templates from catalogs, installed through the Docker Engine API as actions.

``apps.install``, ``apps.upgrade``, ``apps.ignore_upgrade``, ``apps.uninstall`` and ``apps.blue_green``
are ordinary actions (plan, then apply; audited by :mod:`actions.engine`). See ``docs/apps.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actions.apps.state import AppsEnv


def action_types() -> list[type[Any]]:
    """The app store's action classes (what the ``qwq.actions`` entry points name)."""
    from actions.apps.install import Install
    from actions.apps.rollout import BlueGreen
    from actions.apps.uninstall import Uninstall
    from actions.apps.upgrade import IgnoreUpgrade, Upgrade

    return [Install, Upgrade, IgnoreUpgrade, Uninstall, BlueGreen]


def app_actions(env: AppsEnv) -> dict[str, Any]:
    """Every app action bound to ``env``, by name (for ``Engine(extra=...)``)."""
    return {cls.name: cls(env) for cls in action_types()}


__all__: Sequence[str] = ["action_types", "app_actions"]
