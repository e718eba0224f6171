"""Entry-point discovery: built-ins and third-party collectors alike; a broken plugin is disabled, not fatal."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from qwq_core.collector import build_collectors, registry
from qwq_core.errors import ConfigError, NotFoundError
from qwq_core.settings import Settings


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution `acme-qwq` with one good and one broken qwq.collectors entry point."""
    (tmp_path / "acme_qwq.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta
            from pydantic import BaseModel
            from qwq_core.collector import samples

            class Options(BaseModel):
                greeting: str = "hello"

            class Acme:
                default_interval = timedelta(seconds=30)
                Options = Options

                def __init__(self, options, context):
                    self.options, self.context = options, context

                def collect(self, now):
                    return samples(now, [("acme_up", {"greeting": self.options.greeting}, 1)])
            """
        )
    )
    info = tmp_path / "acme_qwq-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-qwq\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[qwq.collectors]\nacme = acme_qwq:Acme\nbroken = acme_qwq_missing:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("acme_qwq", None)


def test_builtins_are_registered_through_entry_points() -> None:
    plugins = {p.name: p for p in registry().plugins()}
    assert plugins["host"].target == "collectors.host:HostCollector" and plugins["host"].enabled
    assert plugins["prometheus"].target == "collectors.prometheus:PrometheusCollector"
    assert plugins["host"].distribution == "qwq"


def test_a_third_party_collector_is_found_and_built_like_a_builtin(third_party: Path) -> None:
    settings = Settings(host="h", collectors={"mine": {"type": "acme", "greeting": "hi"}})
    built = {c.name: c for c in build_collectors(settings, lambda event: None)}
    assert set(built) == {"host", "mine"}
    assert built["mine"].interval.total_seconds() == 30
    frame = built["mine"].collector.collect(__import__("datetime").datetime(2026, 1, 1))
    assert frame["greeting"].to_list() == ["hi"]


def test_a_broken_plugin_is_disabled_with_its_reason(third_party: Path) -> None:
    plugins = {p.name: p for p in registry().plugins()}
    broken = plugins["broken"]
    assert not broken.enabled and "ModuleNotFoundError" in (broken.error or "")
    assert plugins["acme"].enabled and plugins["host"].enabled  # the others still load
    with pytest.raises(NotFoundError, match="disabled: ModuleNotFoundError"):
        registry().get("broken")


def test_configuring_a_broken_or_unknown_type_names_the_key(third_party: Path) -> None:
    settings = Settings(collectors={"x": {"type": "broken"}, "y": {"type": "nope"}, "acme": {"greeting": 5}})
    with pytest.raises(ConfigError) as caught:
        build_collectors(settings, lambda event: None, source="qwq.toml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("qwq.toml: collectors.x.type: ") and "disabled" in lines[0]
    assert lines[1].startswith("qwq.toml: collectors.y.type: unknown")
    assert lines[2].startswith("qwq.toml: collectors.acme.greeting: Input should be a valid string")
