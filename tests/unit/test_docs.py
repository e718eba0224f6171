"""The docs keep up with the code: every setting, metric, CLI command and public name is documented."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

import qwq_core
from qwq_core.cli.main import app, config_app
from qwq_core.collector import registry
from qwq_core.runtime import SELF_METRICS
from qwq_core.settings import CollectorSettings, Settings

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DOCS = "".join(path.read_text() for path in sorted((ROOT / "docs" / "collectors").glob("*.md")))
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text() + COLLECTOR_DOCS
METRICS = (ROOT / "docs" / "metrics.md").read_text() + COLLECTOR_DOCS
BUILT_IN = [plugin for plugin in registry().plugins() if plugin.distribution == "qwq"]
README = (ROOT / "README.md").read_text()


def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted keys of a settings model, nested models expanded."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += keys(annotation, f"{prefix}{name}.")
        elif name != "collectors":
            found.append(prefix + name)
    return found


def documented(key: str) -> bool:
    """A key is documented when its table row names it, e.g. `| `flush_interval` |` under its section."""
    *section, leaf = key.split(".")
    heading = f"[{'.'.join(section)}]" if section else "## Top level"
    return heading in CONFIGURATION and f"| `{leaf}` |" in CONFIGURATION


@pytest.mark.parametrize("key", keys(Settings))
def test_every_setting_is_in_the_configuration_reference(key: str) -> None:
    assert documented(key), f"docs/configuration.md does not document {key}"


def test_every_built_in_collector_loads() -> None:
    broken = {plugin.name: plugin.error for plugin in BUILT_IN if not plugin.enabled}
    assert not broken


def option_names(model: type[BaseModel]) -> list[str]:
    """Option keys of a collector, nested option models (one check of a list) expanded."""
    found = []
    for name, field in model.model_fields.items():
        found.append(name)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            inner = getattr(arg, "__args__", (arg,))[0] if getattr(arg, "__args__", None) else arg
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found += option_names(inner)
    return found


@pytest.mark.parametrize(
    "option",
    sorted(
        {*CollectorSettings.model_fields, *(o for p in BUILT_IN if p.enabled for o in option_names(p.loaded.Options))}
    ),
)
def test_every_collector_option_is_documented(option: str) -> None:
    assert f"| `{option}` |" in CONFIGURATION


def collector_metrics() -> set[str]:
    """Every metric name a built-in collector declares (its module's ``METRICS``)."""
    names = set()
    for plugin in BUILT_IN:
        if plugin.enabled:
            module = importlib.import_module(plugin.target.split(":")[0])
            names |= {info.name for info in getattr(module, "METRICS", ())}
    return names


@pytest.mark.parametrize("name", sorted(collector_metrics() | {info.name for info in SELF_METRICS}))
def test_every_metric_is_in_the_metric_reference(name: str) -> None:
    assert f"| `{name}` |" in METRICS


def test_every_cli_command_is_in_the_readme() -> None:
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    commands += [f"config {c.name}" for c in config_app.registered_commands]
    missing = [c for c in commands if f"qwq {c}" not in README]
    assert not missing, f"README.md does not mention {missing}"


def test_the_readme_gives_the_two_commands_and_the_screenshot() -> None:
    assert "make up" in README and "make test" in README
    image = re.search(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert image and (ROOT / image.group(1)).is_file()


def test_public_names_exist_and_are_documented() -> None:
    for name in qwq_core.__all__:
        obj = getattr(qwq_core, name)
        assert name == "__version__" or obj.__doc__, f"qwq_core.{name} has no docstring"
    assert sorted(qwq_core.__all__) == qwq_core.__all__
