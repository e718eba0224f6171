"""The Compose subset: parsing, validation errors naming file and key, substitution, Engine API translation."""

from __future__ import annotations

import docker
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.apps import compose
from actions.apps.compose import Mount, Port, config_hash, container_specs, create_kwargs, parse_duration_ns, project
from qwq_core.errors import ConfigError

FULL = """
version: "3.8"
services:
  web:
    image: nginx:1.28.0-alpine
    command: ["nginx", "-g", "daemon off;"]
    environment:
      MODE: ${MODE}
      DEBUG: false
      EMPTY:
    ports:
      - "${PORT}:80"
      - "127.0.0.1:8443:443/tcp"
      - target: 53
        published: 5353
        protocol: udp
    volumes:
      - html:/usr/share/nginx/html:ro
      - /srv/conf:/etc/nginx/conf.d
    networks: [front, back]
    healthcheck:
      test: wget -q --spider http://127.0.0.1/
      interval: 1m30s
      timeout: 500ms
      retries: 2
    depends_on:
      db:
        condition: service_healthy
    restart: unless-stopped
    stop_grace_period: 3s
    labels: [tier=front]
  db:
    image: postgres:17.4-alpine
    environment: ["POSTGRES_PASSWORD=${PASSWORD:-changeme}"]
    volumes: [data:/var/lib/postgresql/data]
    networks:
      back:
        aliases: [database]
  worker:
    image: busybox:1
    command: sleep 3600
    depends_on: [db]
    deploy:
      replicas: 3
volumes:
  html:
  data:
networks:
  front:
  back:
"""
VALUES = {"MODE": "prod", "PORT": "8080"}


def parsed() -> compose.Project:
    return project(FULL, "qwq-site", VALUES, source="site/compose.yaml")


def test_full_subset_normalises_every_key() -> None:
    site = parsed()
    assert [s.name for s in site.services] == ["db", "web", "worker"], "dependencies first"
    web = site.service("web")
    assert web.command == ("nginx", "-g", "daemon off;")
    assert web.environment == {"MODE": "prod", "DEBUG": "false", "EMPTY": ""}
    assert web.ports == (Port(80, 8080), Port(443, 8443, "tcp", "127.0.0.1"), Port(53, 5353, "udp"))
    assert web.mounts == (
        Mount("volume", "html", "/usr/share/nginx/html", True),
        Mount("bind", "/srv/conf", "/etc/nginx/conf.d"),
    )
    assert web.health is not None and web.health.test == ("CMD-SHELL", "wget -q --spider http://127.0.0.1/")
    assert (web.health.interval, web.health.timeout, web.health.retries) == (90 * 10**9, 5 * 10**8, 2)
    assert web.depends_on == {"db": "service_healthy"} and web.restart == "unless-stopped"
    assert web.labels == {"tier": "front"} and web.stop_timeout == 3
    assert site.service("db").environment == {"POSTGRES_PASSWORD": "changeme"}
    assert site.service("worker").command == ("/bin/sh", "-c", "sleep 3600") and site.service("worker").replicas == 3


@pytest.mark.parametrize(
    ("change", "key", "reason"),
    [
        (("image: postgres:17.4-alpine", "imagee: postgres"), "services.db.imagee", "unknown key"),
        (("retries: 2", "retries: 0"), "services.web.healthcheck.retries", "greater than or equal to 1"),
        (("restart: unless-stopped", "restart: sometimes"), "services.web.restart", "Input should be"),
        (("interval: 1m30s", "interval: soon"), "services.web.healthcheck.interval", "invalid duration"),
        (('"${PORT}:80"', '"http:80"'), "services.web", "HOST:CONTAINER"),
        (('"${PORT}:80"', '"70000:80"'), "services.web", "out of range"),
        (("[data:/var/lib/postgresql/data]", "[logs:/var/log]"), "services.db.volumes", "not declared"),
        (("networks: [front, back]", "networks: [front, side]"), "services.web.networks", "not declared"),
        (("depends_on: [db]", "depends_on: [cache]"), "services.worker.depends_on", "unknown service"),
        (("replicas: 3", "replicas: -1"), "services.worker.deploy.replicas", "greater than or equal to 0"),
    ],
)
def test_errors_name_the_file_and_the_key(change: tuple[str, str], key: str, reason: str) -> None:
    text = FULL.replace(*change)
    assert text != FULL
    with pytest.raises(ConfigError) as caught:
        project(text, "qwq-site", VALUES, source="site/compose.yaml")
    assert any(i.source == "site/compose.yaml" and i.key == key and reason in i.reason for i in caught.value.issues), (
        caught.value.issues
    )


def test_dependency_cycle_and_replicas_with_fixed_port_are_refused() -> None:
    cycle = "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n"
    with pytest.raises(ConfigError, match="dependency cycle"):
        project(cycle, "p", {})
    scaled = "services:\n  a: {image: x, ports: ['80:80'], deploy: {replicas: 2}}\n"
    with pytest.raises(ConfigError, match="replicas > 1 cannot publish a fixed port"):
        project(scaled, "p", {})


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        project("services:\n  web:\n    image: [unclosed\n", "p", {}, source="bad.yaml")
    (issue,) = caught.value.issues
    assert issue.source == "bad.yaml" and issue.key.startswith("line ") and "invalid YAML" in issue.reason


def test_substitution_forms() -> None:
    values = {"SET": "v", "EMPTY": ""}
    cases = {
        "${SET}": "v",
        "$SET/x": "v/x",
        "${UNSET:-d}": "d",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "$${SET}": "${SET}",
        "a$$b": "a$b",
    }
    for text, expected in cases.items():
        assert compose.substitute(text, values, "f") == expected, text
    with pytest.raises(ConfigError) as caught:
        compose.substitute({"services": {"web": {"image": "${NOPE}"}}}, values, "f.yaml")
    assert caught.value.issues[0].key == "services.web.image" and "NOPE is not set" in caught.value.issues[0].reason
    with pytest.raises(ConfigError, match="give a password"):
        compose.substitute("${EMPTY:?give a password}", values, "f")
    assert compose.variables({"a": ["${X}", "$Y and $$Z"], "b": "${W:-1}"}) == {"X", "Y", "W"}


@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_substituted_values_are_never_parsed_as_yaml(value: str) -> None:
    """A parameter holding YAML syntax (': ', '- ', '{', newlines) lands verbatim: no injection."""
    text = "services:\n  web:\n    image: x\n    environment:\n      VALUE: ${V}\n"
    assert project(text, "p", {"V": value}).service("web").environment == {"VALUE": value}


def test_durations() -> None:
    assert parse_duration_ns("1h2m3s") == (3600 + 120 + 3) * 10**9
    assert parse_duration_ns("250ms") == 250 * 10**6 and parse_duration_ns(5) == 5 * 10**9
    for bad in ("", "5", "1d", "s5"):
        with pytest.raises(ValueError):
            parse_duration_ns(bad)


def test_container_specs_are_labelled_like_compose() -> None:
    specs = container_specs(parsed(), "site", "1.0", extra_networks=["qwq-db_default"])
    assert [s.name for s in specs] == ["qwq-site-db-1", "qwq-site-web-1"] + [f"qwq-site-worker-{n}" for n in (1, 2, 3)]
    web = specs[1]
    assert web.labels["com.docker.compose.project"] == "qwq-site"
    assert web.labels["com.docker.compose.service"] == "web"
    assert web.labels["com.docker.compose.container-number"] == "1"
    assert web.labels["qwq.app"] == "site" and web.labels["qwq.app.version"] == "1.0" and web.labels["tier"] == "front"
    assert web.networks == ["qwq-site_front", "qwq-site_back", "qwq-db_default"] and web.aliases == ["web"]
    assert web.mounts[0] == Mount("volume", "qwq-site_html", "/usr/share/nginx/html", True)
    assert specs[2].networks[0] == "qwq-site_front", "a service without networks joins the first declared one"


def test_config_hash_is_stable_and_sees_every_change() -> None:
    (first, *_), (again, *_) = container_specs(parsed(), "site", "1"), container_specs(parsed(), "site", "1")
    assert config_hash(first) == config_hash(again)
    changed = container_specs(project(FULL.replace("changeme", "other"), "qwq-site", VALUES), "site", "1")[0]
    assert config_hash(changed) != config_hash(first), "a changed secret recreates the container"
    assert config_hash(container_specs(parsed(), "site", "2")[0]) != config_hash(first)


def test_create_kwargs_translate_to_engine_api_calls() -> None:
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    web = container_specs(parsed(), "site", "1")[1]
    kwargs = create_kwargs(api, web)
    host = kwargs["host_config"]
    assert host["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8443"}],
        "53/udp": [{"HostIp": "", "HostPort": "5353"}],
    }
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert host["NetworkMode"] == "qwq-site_front"
    assert [(m["Source"], m["Target"], m["Type"], m["ReadOnly"]) for m in host["Mounts"]] == [
        ("qwq-site_html", "/usr/share/nginx/html", "volume", True),
        ("/srv/conf", "/etc/nginx/conf.d", "bind", False),
    ]
    assert kwargs["healthcheck"]["test"][0] == "CMD-SHELL" and kwargs["stop_timeout"] == 3
    assert kwargs["labels"]["qwq.config-hash"] == config_hash(web)
    assert kwargs["networking_config"]["EndpointsConfig"]["qwq-site_front"]["Aliases"] == ["web"]
    green = create_kwargs(api, web, name="x.qwq-green", role="green")
    assert green["name"] == "x.qwq-green" and green["labels"]["qwq.role"] == "green"
    assert not green["networking_config"]["EndpointsConfig"]["qwq-site_front"].get("Aliases")
