"""Configuration: precedence, defaults, and errors that name the file (or variable), the key and the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qwq_core.collector import configured
from qwq_core.errors import ConfigError
from qwq_core.settings import load_settings, override


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings, source = load_settings(env={"QWQ_HOME": str(tmp_path)})
    assert source is None
    assert settings.store_path == tmp_path / "qwq.duckdb"
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8765)
    retention = settings.store.retention
    assert (retention.raw, retention.minute, retention.hour) == (
        timedelta(days=7),
        timedelta(days=90),
        timedelta(days=730),
    )
    assert list(configured(settings)) == ["host"]


def test_the_home_config_file_is_found_and_env_overrides_it(tmp_path: Path) -> None:
    write(tmp_path / "qwq.toml", '[server]\nport = 9000\nhost = "0.0.0.0"\n[collectors.host]\ninterval = "1s"\n')
    env = {"QWQ_HOME": str(tmp_path), "QWQ_SERVER__PORT": "9100", "QWQ_COLLECTORS__HOST__INTERVAL": "2s"}
    settings, source = load_settings(env=env)
    assert source == tmp_path / "qwq.toml"
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)
    assert settings.collectors["host"].interval == timedelta(seconds=2)


def test_qwq_config_names_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "elsewhere.toml", "[store]\nflush_interval = 5\n")
    settings, source = load_settings(env={"QWQ_CONFIG": str(config), "QWQ_HOME": str(tmp_path / "h")})
    assert source == config and settings.store.flush_interval == timedelta(seconds=5)


def test_every_invalid_key_is_reported_with_file_key_and_reason(tmp_path: Path) -> None:
    config = write(
        tmp_path / "qwq.toml",
        '[server]\nport = "http"\n[store]\nflush_interval = "soon"\ntypo = 1\n[store.retention]\nraw = "-1d"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    issues = {issue.key: issue for issue in caught.value.issues}
    assert set(issues) == {"server.port", "store.flush_interval", "store.typo", "store.retention.raw"}
    assert all(issue.source == str(config) for issue in issues.values())
    assert "valid integer" in issues["server.port"].reason and "'http'" in issues["server.port"].reason
    assert "invalid duration 'soon'" in issues["store.flush_interval"].reason
    assert issues["store.typo"].reason == "Extra inputs are not permitted"
    assert str(issues["server.port"]).startswith(f"{config}: server.port: ")


def test_an_invalid_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"QWQ_HOME": str(tmp_path), "QWQ_SERVER__PORT": "70000"})
    (issue,) = caught.value.issues
    assert issue.source == "environment variable QWQ_SERVER__PORT" and issue.key == "server.port"


def test_toml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    config = write(tmp_path / "qwq.toml", "[server]\nport = 80\nhost = \n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    (issue,) = caught.value.issues
    assert issue.key == "line 3, column 8" and issue.reason.startswith("invalid TOML")


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "absent.toml", env={})


def test_command_line_overrides_are_validated(tmp_path: Path) -> None:
    settings, _ = load_settings(env={"QWQ_HOME": str(tmp_path)})
    assert override(settings, **{"server.port": 0, "server.host": None}).server.port == 0
    with pytest.raises(ConfigError, match="command line: server.port"):
        override(settings, **{"server.port": -1})


def test_the_host_collector_can_be_disabled_and_others_added(tmp_path: Path) -> None:
    config = write(
        tmp_path / "qwq.toml",
        '[collectors.host]\nenabled = false\n[collectors.node]\ntype = "prometheus"\nurls = ["http://x:9100/"]\n',
    )
    settings, _ = load_settings(config, env={})
    collectors = configured(settings)
    assert collectors["host"].enabled is False
    assert collectors["node"].type == "prometheus" and collectors["node"].options == {"urls": ["http://x:9100/"]}


def test_secrets_never_print(tmp_path: Path) -> None:
    config = write(tmp_path / "qwq.toml", '[server]\ntoken = "hunter2"\n')
    settings, _ = load_settings(config, env={})
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.model_dump_json()
    assert settings.server.token is not None and settings.server.token.get_secret_value() == "hunter2"


def test_an_unreadable_announcement_is_no_server(tmp_path: Path) -> None:
    from qwq_core.announce import Announcement

    (tmp_path / "qwq.server.json").mkdir()  # reading it fails with IsADirectoryError
    assert Announcement.read(tmp_path / "qwq.server.json") is None
    (tmp_path / "other.json").write_text('{"url": "http://x", "pid": 1, "store": "s"}')  # pid 1: init, not ours
    assert Announcement.read(tmp_path / "other.json") is not None  # alive (PermissionError or not) is alive


def test_rejected_values_of_secret_looking_keys_are_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "qwq.toml"
    config.write_text('[server]\ntoken = 5\nport = "eighty"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    text = str(caught.value)
    assert "'eighty'" in text and "server.token" in text and "(got 5)" not in text
