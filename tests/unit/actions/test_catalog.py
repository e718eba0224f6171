"""App templates and catalogs: the built-in catalog validated offline, parameters, third-party sources."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.apps.catalog import Catalog, Manifest, ParamSpec, load_template, version_key
from actions.apps.compose import load_yaml
from actions.apps.state import SecretBox
from actions.redact import SECRET_KEY
from qwq_core.errors import ConfigError, NotFoundError

REQUIRED = (
    "nginx", "mariadb", "mysql", "postgresql", "redis", "mongodb", "prometheus",
    "grafana", "jaeger", "jenkins", "gitlab", "sonarqube", "uptime-kuma",
)  # fmt: skip
TEST_CATALOG = Path(__file__).parents[2] / "integration" / "actions" / "catalog"
DOCS = Path(__file__).parents[3] / "docs" / "apps.md"


@pytest.fixture(scope="module")
def builtin() -> Catalog:
    return Catalog.load(["builtin"])


def test_builtin_catalog_ships_every_required_app_and_skips_none(builtin: Catalog) -> None:
    assert builtin.skipped == []
    assert set(REQUIRED) <= set(builtin.names())


@pytest.mark.parametrize("name", REQUIRED)
def test_builtin_template_is_complete(builtin: Catalog, name: str) -> None:
    template = builtin.get(name)
    values = {k: "secret-value" if s.is_secret else str(s.default) for k, s in template.manifest.params.items()}
    if template.manifest.dependencies:
        values |= {"DB_HOST": "db", "DB_POSTGRES_DB": "x", "DB_POSTGRES_USER": "u", "DB_POSTGRES_PASSWORD": "p"}
    project = template.project(name, values)
    for service in project.services:
        image, _, tag = service.image.rpartition(":")
        assert image and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {service.image}"
        assert service.health is not None, f"{name}/{service.name} needs a health check"
        assert service.restart == "unless-stopped"
    assert {v.name for v in template.manifest.volumes} == set(project.volumes), "every volume documented"
    published = {p.host_port for s in project.services for p in s.ports}
    assert {int(values[p.param]) for p in template.manifest.ports} == published, "every published port declared"
    assert template.manifest.description and template.manifest.category and template.manifest.icon


def test_every_secret_parameter_is_masked_by_name(builtin: Catalog) -> None:
    secrets = [(t.name, k) for t in builtin.latest() for k, s in t.manifest.params.items() if s.is_secret]
    assert secrets and all(SECRET_KEY.search(key) for _, key in secrets)


def test_sonarqube_depends_on_postgresql_variables_that_exist(builtin: Catalog) -> None:
    (dependency,) = builtin.get("sonarqube").manifest.dependencies
    assert dependency.app == "postgresql"
    raw = load_yaml(builtin.get("sonarqube").compose_text, "compose.yaml")
    from actions.apps.compose import variables

    used = {v.removeprefix("DB_") for v in variables(raw) if v.startswith("DB_")} - {"HOST"}
    assert used <= set(builtin.get("postgresql").manifest.params)


def test_resolve_defaults_coercion_and_generated_passwords(builtin: Catalog, tmp_path: Path) -> None:
    template = builtin.get("redis")
    box = SecretBox(tmp_path / "key")
    values = template.resolve({"PORT": "7000"}, generate=lambda p: box.generate("cache", p))
    assert values["PORT"] == "7000" and values["MAXMEMORY_MB"] == "256"
    assert values["PASSWORD"] == box.generate("cache", "PASSWORD") != box.generate("other", "PASSWORD")
    assert len(values["PASSWORD"]) >= 20
    kept = template.resolve({}, previous={"PASSWORD": "old", "PORT": "7001"})
    assert (kept["PASSWORD"], kept["PORT"]) == ("old", "7001"), "an installed app keeps its values"
    with pytest.raises(ConfigError) as caught:
        template.resolve({"PORT": 70000, "MAXMEMORY_MB": "lots", "COLOUR": "red"})
    reasons = {issue.key: issue.reason for issue in caught.value.issues}
    assert reasons == {
        "COLOUR": "unknown parameter",
        "PORT": "must be between 1 and 65535",
        "MAXMEMORY_MB": "must be an integer",
    }


@pytest.mark.parametrize(
    ("spec", "value", "error"),
    [
        ({"type": "enum", "choices": ["a", "b"]}, "c", "must be one of a, b"),
        ({"type": "int", "min": 1, "max": 5}, 6, "must be between 1 and 5"),
        ({"type": "string", "pattern": "[a-z]+"}, "A1", "must match"),
        ({"type": "bool"}, "maybe", "must be true or false"),
        ({"type": "port"}, True, "must be an integer"),
    ],
)
def test_parameter_validation(spec: dict[str, object], value: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ParamSpec.model_validate(spec).coerce(value)


def test_invalid_default_and_enum_without_choices_are_schema_errors() -> None:
    for spec in ({"type": "port", "default": 0}, {"type": "enum"}):
        with pytest.raises(ValueError):
            ParamSpec.model_validate(spec)


def write_template(root: Path, name: str, version: str = "1", compose: str | None = None, **extra: str) -> Path:
    directory = root / name / version
    directory.mkdir(parents=True)
    manifest = f'name = "{name}"\nversion = "{version}"\ncategory = "test"\ndescription = "d"\n'
    (directory / "app.toml").write_text(manifest + "".join(f"{k} = {v}\n" for k, v in extra.items()))
    (directory / "compose.yaml").write_text(compose or "services:\n  main:\n    image: busybox:1\n")
    return directory


def test_broken_third_party_templates_are_skipped_with_reasons(tmp_path: Path) -> None:
    write_template(tmp_path, "good")
    write_template(tmp_path, "bad-yaml", compose="services: [\n")
    write_template(tmp_path, "undeclared", compose="services:\n  m:\n    image: x:${NOPE}\n")
    write_template(tmp_path, "bad-meta", colour='"red"')
    write_template(tmp_path, "nginx", version="1.28.0")  # duplicates the built-in
    catalog = Catalog.load(["builtin", str(tmp_path), str(tmp_path / "missing")])
    assert "good" in catalog.names() and catalog.get("nginx").source == "builtin"
    reasons = {Path(s.path).parent.name or s.source: s.reason for s in catalog.skipped}
    assert "invalid YAML" in reasons["bad-yaml"]
    assert "${NOPE}: not a declared parameter" in reasons["undeclared"]
    assert "colour: Extra inputs are not permitted" in reasons["bad-meta"]
    assert reasons["nginx"] == "duplicate of nginx 1.28.0"
    assert "is not a directory" in reasons[str(tmp_path / "missing")]


def test_versions_sort_numerically_and_get_explains_what_exists(tmp_path: Path) -> None:
    for version in ("1.9", "1.10", "1.2"):
        write_template(tmp_path, "app", version)
    catalog = Catalog.load([str(tmp_path)])
    assert catalog.versions("app") == ["1.2", "1.9", "1.10"] and catalog.get("app").version == "1.10"
    with pytest.raises(NotFoundError, match=r"has no version '2' \(available: 1.2, 1.9, 1.10\)"):
        catalog.get("app", "2")
    with pytest.raises(NotFoundError, match="no app 'nope'"):
        catalog.get("nope")


@given(st.lists(st.integers(0, 999), min_size=1, max_size=4), st.lists(st.integers(0, 999), min_size=1, max_size=4))
def test_version_key_orders_like_number_tuples(a: list[int], b: list[int]) -> None:
    left, right = ".".join(map(str, a)), ".".join(map(str, b))
    assert (version_key(left) < version_key(right)) == (a < b)


def test_search_matches_name_category_and_description(builtin: Catalog) -> None:
    assert {t.name for t in builtin.search("DATABASE")} >= {"postgresql", "mariadb", "mysql", "redis", "mongodb"}
    assert [t.name for t in builtin.search("tracing")] == ["jaeger"]


def test_test_catalog_is_valid() -> None:
    catalog = Catalog.load([str(TEST_CATALOG)])
    assert catalog.skipped == [] and catalog.versions("web") == ["1", "2", "3"]


def test_git_catalog_is_cloned_into_the_cache(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    write_template(repo, "gitapp")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "catalog"], check=True)
    catalog = Catalog.load([f"git+file://{repo}"], cache=tmp_path / "cache")
    assert catalog.names() == ["gitapp"] and catalog.get("gitapp").path.is_relative_to(tmp_path / "cache")


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_tarball_and_zip_catalogs(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    source = write_template(tmp_path / "src", "tarapp").parent.parent
    with tarfile.open(root / "catalog.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="catalog-main")  # GitHub archives wrap everything in one directory
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("zipapp/app.toml", 'name = "zipapp"\nversion = "2"\ncategory = "t"\ndescription = "d"\n')
        archive.writestr("zipapp/compose.yaml", "services:\n  m:\n    image: x:1\n")
    (root / "catalog.zip").write_bytes(buffer.getvalue())
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escape/app.toml", "x")
    (root / "evil.zip").write_bytes(evil.getvalue())

    catalog = Catalog.load([f"{url}/catalog.tar.gz", f"{url}/catalog.zip", f"{url}/evil.zip", f"{url}/gone.tgz"],
                           cache=tmp_path / "cache")  # fmt: skip
    assert catalog.names() == ["tarapp", "zipapp"]
    reasons = {s.source.rsplit("/", 1)[1]: s.reason for s in catalog.skipped}
    assert "escapes the catalog directory" in reasons["evil.zip"] and "404" in reasons["gone.tgz"]
    assert not (tmp_path / "escape").exists()


def test_load_template_names_file_and_key(tmp_path: Path) -> None:
    directory = write_template(tmp_path, "x", ports='[{ param = "HTTP", container = 80 }]')
    with pytest.raises(ConfigError) as caught:
        load_template(directory)
    assert [(i.key, i.reason) for i in caught.value.issues] == [("ports.HTTP", "not a declared parameter")]
    assert caught.value.issues[0].source == str(directory / "app.toml")


def test_docs_list_every_metadata_key() -> None:
    text = DOCS.read_text()
    for key in Manifest.model_fields:
        assert f"| `{key}` |" in text, f"docs/apps.md lacks a row for {key}"
    for key in ParamSpec.model_fields:
        assert f"| `{key}` |" in text, f"docs/apps.md lacks a row for parameter key {key}"
