"""The app store on the real Docker-API engine (podman's service), driven by the test catalog next to this file.

The test catalog's apps run the locally built busybox image: ``web`` (httpd with a health check; v2 healthy,
v3 never healthy), ``client`` (depends on web) and ``pool`` (three replicas, for rolling updates).
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from actions.apps.compose import APP_LABEL, PROJECT_LABEL, SERVICE_LABEL
from actions.apps.deploy import host_port_free
from actions.apps.install import Install
from actions.apps.rollout import BlueGreen
from actions.apps.state import AppsEnv, installed
from actions.apps.status import app_status
from actions.apps.uninstall import Uninstall
from actions.apps.upgrade import IgnoreUpgrade, Upgrade
from actions.engine import Engine, audit
from qwq_core.errors import ActionError
from qwq_core.store import LocalStore
from tests.services.podman import PodmanEngine

pytestmark = [pytest.mark.service, pytest.mark.slow]
CATALOG = Path(__file__).with_name("catalog")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Apps:
    """One test's app store: an env on the test catalog, an action engine, names unique to the test."""

    def __init__(self, engine: Engine, env: AppsEnv, store: LocalStore, client: docker.DockerClient) -> None:
        self.engine, self.env, self.store, self.client = engine, env, store, client
        self.prefix = f"t{uuid.uuid4().hex[:6]}"

    def name(self, app: str) -> str:
        return f"{self.prefix}-{app}"

    def run(self, action: str, params: dict[str, Any], **options: Any) -> Any:
        return self.engine.run(action, params, actor="test", **options)

    def containers(self, app: str) -> list[Any]:
        return self.client.containers.list(all=True, filters={"label": f"{APP_LABEL}={self.name(app)}"})

    def page(self, port: int, path: str = "/version") -> str:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).text.strip()

    def cleanup(self) -> None:
        api = self.client.api
        mine = [
            c for c in api.containers(all=True) if (c.get("Labels") or {}).get(APP_LABEL, "").startswith(self.prefix)
        ]
        for container in mine:
            api.remove_container(container["Id"], force=True)
        for network in api.networks():
            if network["Name"].startswith(f"qwq-{self.prefix}"):
                api.remove_network(network["Name"])
        for volume in (api.volumes() or {}).get("Volumes") or []:
            if volume["Name"].startswith(f"qwq-{self.prefix}"):
                api.remove_volume(volume["Name"], force=True)


@pytest.fixture
def health_ticker(engine: PodmanEngine, docker_client: docker.DockerClient) -> Iterator[None]:
    """Run the health checks of running app containers every 0.3 s (Docker does it itself; podman needs
    systemd for its timer)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.3):
            for container in docker_client.api.containers(filters={"label": APP_LABEL}):
                with suppress(docker.errors.APIError):  # gone meanwhile (podman may answer 500)
                    if docker_client.api.inspect_container(container["Id"])["Config"].get("Healthcheck"):
                        engine.healthcheck(container["Id"])

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


@pytest.fixture
def apps(
    make_engine: Callable[..., Engine],
    store: LocalStore,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    health_ticker: None,
) -> Iterator[Apps]:
    env = AppsEnv(tmp_path / "home", (str(CATALOG),), poll=0.2)
    actions = {cls.name: cls(env) for cls in (Install, Upgrade, IgnoreUpgrade, Uninstall, BlueGreen)}
    made = Apps(make_engine(actions), env, store, docker_client)
    yield made
    made.cleanup()


def test_install_upgrade_rollback_uninstall_lifecycle(apps: Apps) -> None:
    port, name = free_port(), apps.name("web")
    install = {"app": "web", "name": name, "version": "1", "params": {"HTTP_PORT": port}}

    planned = apps.run("apps.install", install, dry_run=True)
    assert planned.outcome == "planned"
    assert {c.target.split(":")[0] for c in planned.plan.changes} >= {"network", "volume", "container", "app"}
    assert apps.containers("web") == [], "a dry run creates nothing"

    first = apps.run("apps.install", install)
    assert first.outcome == "applied", first.error
    assert apps.page(port) == "v1 hello"
    (container,) = apps.containers("web")
    labels = container.labels
    assert labels[APP_LABEL] == name and labels[PROJECT_LABEL] == f"qwq-{name}" and labels[SERVICE_LABEL] == "web"
    record = installed(apps.store)[name]
    assert record.version == "1" and "ADMIN_PASSWORD" in record.secrets
    password = container.attrs["Config"]["Env"]
    secret = next(e.split("=", 1)[1] for e in password if e.startswith("ADMIN_PASSWORD="))
    events = apps.store.events(since="1h", kind="app.*")
    assert secret not in events["attrs"].str.join(""), "the generated password is stored encrypted, never in clear"

    again = apps.run("apps.install", install)
    assert again.plan.empty and again.outcome == "noop"

    upgraded = apps.run("apps.upgrade", {"name": name, "version": "2"})
    assert upgraded.outcome == "applied", upgraded.error
    assert apps.page(port) == "v2 hello"
    (container,) = apps.containers("web")
    starts = container.exec_run(["cat", "/data/starts"]).output.decode().splitlines()
    assert len(starts) == 2, "the new version runs on the same volume"

    broken = apps.run("apps.upgrade", {"name": name, "version": "3"})
    assert broken.outcome == "failed"
    assert "rolled back to 2" in (broken.error or "") and broken.rolled_back
    assert apps.page(port) == "v2 hello", "the old containers serve again"
    assert [c.name for c in apps.containers("web")] == [f"qwq-{name}-web-1"]
    assert installed(apps.store)[name].version == "2"

    gone = apps.run("apps.uninstall", {"name": name})
    assert gone.outcome == "applied" and apps.containers("web") == []
    assert name not in installed(apps.store)
    volumes = [v.name for v in apps.client.volumes.list() if v.name.startswith(f"qwq-{name}")]
    assert volumes == [f"qwq-{name}_data"], "uninstall keeps data unless asked"

    trail = audit(apps.store, since="1h", target=f"app:{name}")
    outcomes = list(zip(trail["action"].reverse(), trail["outcome"].reverse(), strict=True))
    assert outcomes == [
        ("apps.install", "planned"),
        ("apps.install", "applied"),
        ("apps.install", "noop"),
        ("apps.upgrade", "applied"),
        ("apps.upgrade", "failed"),
        ("apps.uninstall", "applied"),
    ]
    assert all("**********" in p for p in trail["params"] if "ADMIN_PASSWORD" in p)


def test_reinstall_after_keep_data_uninstall_reuses_volume_and_delete_data_removes_it(apps: Apps) -> None:
    port, name = free_port(), apps.name("web")
    install = {"app": "web", "name": name, "version": "2", "params": {"HTTP_PORT": port, "GREETING": "hi"}}
    apps.run("apps.install", install).raise_for_outcome()
    apps.run("apps.uninstall", {"name": name}).raise_for_outcome()
    apps.run("apps.install", install).raise_for_outcome()
    (container,) = apps.containers("web")
    assert len(container.exec_run(["cat", "/data/starts"]).output.decode().splitlines()) == 2
    apps.run("apps.uninstall", {"name": name, "delete_data": True}).raise_for_outcome()
    assert not [v for v in apps.client.volumes.list() if v.name.startswith(f"qwq-{name}")]


def test_failed_install_removes_everything_it_created(apps: Apps) -> None:
    name = apps.name("web")
    failed = apps.run(
        "apps.install", {"app": "web", "name": name, "version": "3", "params": {"HTTP_PORT": free_port()}}
    )
    assert failed.outcome == "failed" and "not healthy" in (failed.error or "")
    assert {u.split()[1] for u in failed.rolled_back} == {"container", "network", "volume"}
    assert apps.containers("web") == [] and name not in installed(apps.store)
    assert not [n for n in apps.client.networks.list() if n.name.startswith(f"qwq-{name}")]
    assert not [v for v in apps.client.volumes.list() if v.name.startswith(f"qwq-{name}")]


def test_missing_dependency_installed_on_request(apps: Apps) -> None:
    if not host_port_free(18080):
        pytest.skip("the web template's default port 18080 is taken on this host")
    client = {"app": "client", "name": apps.name("client"), "install_dependencies": True}
    planned = apps.run("apps.install", client, dry_run=True)
    assert "container:qwq-web-web-1" in {c.target for c in planned.plan.changes}
    try:
        apps.run("apps.install", client).raise_for_outcome()
        assert set(installed(apps.store)) == {"web", apps.name("client")}
        assert installed(apps.store)[apps.name("client")].dependencies == {"WEB": "web"}
    finally:
        for name in (apps.name("client"), "web"):
            apps.run("apps.uninstall", {"name": name, "delete_data": True, "force": True})


def test_port_conflicts_are_refused_before_anything_is_created(apps: Apps) -> None:
    port = free_port()
    first = {"app": "web", "name": apps.name("web"), "version": "1", "params": {"HTTP_PORT": port}}
    apps.run("apps.install", first).raise_for_outcome()
    second = {**first, "name": apps.name("other")}
    with pytest.raises(ActionError, match=rf"port {port}/tcp is already published by container qwq-{apps.name('web')}"):
        apps.run("apps.install", second)
    assert apps.containers("other") == []

    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        third = {**first, "name": apps.name("third"), "params": {"HTTP_PORT": taken}}
        with pytest.raises(ActionError, match=rf"port {taken}/tcp is already in use on the host"):
            apps.run("apps.install", third)
    assert apps.containers("third") == []
    assert not [n for n in apps.client.networks.list() if n.name.startswith(f"qwq-{apps.name('third')}")]
    refused = audit(apps.store, since="1h", outcome="failed")
    assert len(refused) == 2 and set(refused["stage"]) == {"plan"}


def test_missing_dependency_is_refused_then_linked_or_installed(apps: Apps) -> None:
    client = {"app": "client", "name": apps.name("client")}
    with pytest.raises(ActionError, match=r"needs web \(as WEB\), which is not installed"):
        apps.run("apps.install", client)
    assert apps.containers("client") == [] and apps.containers("web") == []

    port = free_port()
    web = {"app": "web", "name": apps.name("web"), "version": "2", "params": {"HTTP_PORT": port, "GREETING": "yo"}}
    apps.run("apps.install", web).raise_for_outcome()
    apps.run("apps.install", client).raise_for_outcome()
    (container,) = apps.containers("client")
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["WEB_URL"] == f"http://qwq-{apps.name('web')}-web-1:8080/" and env["WEB_GREETING"] == "yo"
    assert f"qwq-{apps.name('web')}_default" in container.attrs["NetworkSettings"]["Networks"]
    assert installed(apps.store)[apps.name("client")].dependencies == {"WEB": apps.name("web")}
    with pytest.raises(ActionError, match="is used by"):
        apps.run("apps.uninstall", {"name": apps.name("web")})


def test_rolling_update_replaces_replicas_one_at_a_time_and_rolls_back(apps: Apps) -> None:
    name = apps.name("pool")
    apps.run("apps.install", {"app": "pool", "name": name, "version": "1"}).raise_for_outcome()
    before = {c.name: c.id for c in apps.containers("pool")}
    assert len(before) == 3

    progress: list[str] = []
    done = apps.run("apps.upgrade", {"name": name, "version": "2"}, on_progress=lambda s: progress.append(s.message))
    assert done.outcome == "applied", done.error
    after = {c.name: c for c in apps.containers("pool")}
    assert set(after) == set(before) and not set(c.id for c in after.values()) & set(before.values())
    assert {c.exec_run(["cat", "/tmp/version"]).output.decode().strip() for c in after.values()} == {"v2"}
    replaced = [m.split()[1] for m in dict.fromkeys(progress) if m.startswith("replace")]
    assert replaced == [f"qwq-{name}-worker-{n}" for n in (1, 2, 3)], "one replica after another"

    broken = apps.run("apps.upgrade", {"name": name, "version": "3"})
    assert broken.outcome == "failed" and "rolled back to 2" in (broken.error or "")
    restored = {c.name: c for c in apps.containers("pool")}
    assert {n: c.id for n, c in restored.items()} == {n: c.id for n, c in after.items()}
    assert all(c.status == "running" for c in restored.values())


def aliases(container: Any, network: str) -> list[str]:
    container.reload()
    return list(container.attrs["NetworkSettings"]["Networks"][network].get("Aliases") or [])


def test_blue_green_switches_the_alias_only_to_a_healthy_green(apps: Apps) -> None:
    name = apps.name("pool")
    network = f"qwq-{name}_default"
    apps.run("apps.install", {"app": "pool", "name": name, "version": "1"}).raise_for_outcome()
    blue = {c.name: c.id for c in apps.containers("pool")}

    broken = apps.run("apps.blue_green", {"name": name, "version": "3"})
    assert broken.outcome == "failed" and "blue stays live" in (broken.error or "")
    live = apps.containers("pool")
    assert {c.name: c.id for c in live} == blue, "blue untouched, green removed"
    assert all("worker" in aliases(c, network) for c in live)

    switched = apps.run("apps.blue_green", {"name": name, "version": "2"})
    assert switched.outcome == "applied", switched.error
    green = apps.containers("pool")
    assert {c.name for c in green} == set(blue) and not {c.id for c in green} & set(blue.values())
    assert all("worker" in aliases(c, network) for c in green)
    assert {c.exec_run(["cat", "/tmp/version"]).output.decode().strip() for c in green} == {"v2"}
    assert installed(apps.store)[name].version == "2"
    assert apps.run("apps.install", {"app": "pool", "name": name}).outcome == "noop", "green is the app now"


def test_blue_green_refuses_fixed_host_ports(apps: Apps) -> None:
    name = apps.name("web")
    apps.run("apps.install", {"app": "web", "name": name, "version": "1", "params": {"HTTP_PORT": free_port()}})
    with pytest.raises(ActionError, match="publish a fixed host port"):
        apps.run("apps.blue_green", {"name": name, "version": "2"})


def test_status_and_ignore_upgrade(apps: Apps) -> None:
    name = apps.name("web")
    apps.run("apps.install", {"app": "web", "name": name, "version": "1", "params": {"HTTP_PORT": free_port()}})
    (row,) = [r for r in app_status(apps.client.api, apps.store, apps.env) if r["name"] == name]
    assert row["state"] == "running" and row["latest"] == "3" and row["upgrade_available"]
    assert row["params"]["ADMIN_PASSWORD"] == "**********"

    apps.run("apps.ignore_upgrade", {"name": name}).raise_for_outcome()
    skipped = apps.run("apps.upgrade", {"name": name})
    assert skipped.outcome == "noop"
    (row,) = [r for r in app_status(apps.client.api, apps.store, apps.env) if r["name"] == name]
    assert row["ignore_upgrade"] and not row["upgrade_available"]
    assert json.dumps(row)  # JSON-able for REST


def test_rest_routes_run_through_the_engine(apps: Apps) -> None:
    from fastapi.testclient import TestClient

    from actions.apps.api import build_router
    from qwq_core.server import build_app

    app = build_app(apps.store, dashboard=False, extra_routers=[build_router(apps.engine, apps.env)])
    name, port = apps.name("web"), free_port()
    with TestClient(app) as http:
        catalog = http.get("/api/v1/apps/catalog").json()
        assert {a["name"] for a in catalog["apps"]} == {"web", "client", "pool"} and catalog["skipped"] == []
        web = http.get("/api/v1/apps/catalog/web", params={"version": "2"}).json()
        assert web["versions"] == ["1", "2", "3"] and "services:" in web["compose"]
        assert http.get("/api/v1/apps/catalog/nope").status_code == 404

        body = {"app": "web", "version": "1", "params": {"HTTP_PORT": port, "ADMIN_PASSWORD": "s3cret-pw"}}
        planned = http.post(f"/api/v1/apps/{name}/install", json={**body, "dry_run": True}).json()
        assert planned["outcome"] == "planned" and planned["plan"]["params"]["params"]["ADMIN_PASSWORD"] == "**********"
        assert http.post(f"/api/v1/apps/{name}/install", json=body).json()["outcome"] == "applied"
        (row,) = [r for r in http.get("/api/v1/apps").json() if r["name"] == name]
        assert row["state"] == "running" and row["version"] == "1"
        conflict = http.post(f"/api/v1/apps/{apps.name('other')}/install", json={**body, "app": "web"})
        assert conflict.status_code == 409 and "already published" in conflict.json()["error"]["message"]
        upgraded = http.post(f"/api/v1/apps/{name}/upgrade", json={"version": "2"}).json()
        assert upgraded["outcome"] == "applied" and apps.page(port) == "v2 hello"
        assert http.post(f"/api/v1/apps/{name}/uninstall", json={"delete_data": True}).json()["outcome"] == "applied"
        assert http.get("/api/v1/apps").json() == []
    assert "s3cret-pw" not in apps.store.sql("SELECT string_agg(attrs, '') AS a FROM events")["a"][0]


def test_cli_lists_shows_and_plans(engine: PodmanEngine, qwq_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from qwq_core.cli.apps_cli import apps_app

    monkeypatch.setenv("DOCKER_HOST", engine.url)
    runner = CliRunner()
    listed = runner.invoke(apps_app, ["list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert {"nginx", "gitlab", "uptime-kuma"} <= {row["name"] for row in json.loads(listed.stdout)}
    shown = runner.invoke(apps_app, ["show", "redis"])
    assert shown.exit_code == 0 and "MAXMEMORY_MB" in shown.stdout and "/data" in shown.stdout
    found = runner.invoke(apps_app, ["search", "tracing", "--format", "json"])
    assert [row["name"] for row in json.loads(found.stdout)] == ["jaeger"]

    port = free_port()
    planned = runner.invoke(apps_app, ["install", "nginx", "--set", f"HTTP_PORT={port}", "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "qwq-nginx-web-1" in planned.stdout and "dry run: nothing changed" in planned.stdout
    bad = runner.invoke(apps_app, ["install", "nginx", "--set", "HTTP_PORT=0", "--dry-run"])
    assert bad.exit_code != 0 and "HTTP_PORT" in str(bad.exception)
    status = runner.invoke(apps_app, ["status", "--format", "json"])
    assert status.exit_code == 0 and json.loads(status.stdout) == []
