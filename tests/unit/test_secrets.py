"""qwq_core.secrets: a secret given literally or as an environment-variable reference, never shown."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from qwq_core.secrets import Secret, reveal


class Options(BaseModel):
    password: Secret
    token: Secret | None = None


def parse(toml: str, env: dict[str, str] | None = None) -> Options:
    return Options.model_validate(tomllib.loads(toml), context={"env": env or {}})


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('password = "s3cret"', "s3cret"),
        ("password = 1234", "1234"),
        ('password = "env:PGPASSWORD"', "from-env"),
        ('password = { env = "PGPASSWORD" }', "from-env"),
        ('password = { value = "env:PGPASSWORD" }', "env:PGPASSWORD"),
        ('password = ""', ""),
    ],
)
def test_every_form_resolves_to_a_secret(toml: str, expected: str) -> None:
    options = parse(toml, {"PGPASSWORD": "from-env"})
    assert isinstance(options.password, SecretStr)
    assert options.password.get_secret_value() == expected
    assert options.token is None and reveal(options.token) is None


def test_the_process_environment_is_read_without_a_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWQTEST_SECRET", "from-process")
    assert reveal(Options.model_validate({"password": "env:QWQTEST_SECRET"}).password) == "from-process"
    monkeypatch.delenv("QWQTEST_SECRET")
    with pytest.raises(ValidationError, match="environment variable QWQTEST_SECRET is not set"):
        Options.model_validate({"password": {"env": "QWQTEST_SECRET"}})


@pytest.mark.parametrize("toml", ['password = "env:PGPASSWORD"', 'password = { env = "PGPASSWORD" }'])
def test_an_unset_variable_is_an_error_naming_it(toml: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(toml, {"OTHER": "x"})
    (error,) = caught.value.errors()
    assert error["loc"] == ("password",)
    assert error["msg"] == "Value error, environment variable PGPASSWORD is not set"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"env": 5}, "keys ['env']"),
        ({"file": "/run/secret"}, "keys ['file']"),
        ({"env": "A", "value": "b"}, "keys ['env', 'value']"),
        (["a"], "a secret must be"),
        (True, "a secret must be"),
        ("env:", "invalid environment variable name ''"),
        ("env:A=B", "invalid environment variable name 'A=B'"),
    ],
)
def test_malformed_secrets_are_rejected_with_the_accepted_forms(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match="a secret must be|invalid environment variable") as caught:
        Options.model_validate({"password": value}, context={"env": {}})
    assert message in str(caught.value)


def test_the_value_is_masked_in_reprs_and_dumps() -> None:
    options = parse('password = "hunter2"\ntoken = "env:TOKEN"', {"TOKEN": "t0ken-value"})
    for shown in (repr(options), str(options), options.model_dump_json(), str(options.model_dump(mode="json"))):
        assert "hunter2" not in shown and "t0ken-value" not in shown
    assert options.model_dump(mode="json") == {"password": "**********", "token": "**********"}


@given(st.text().filter(lambda s: not s.startswith("env:")))
def test_any_literal_round_trips(literal: str) -> None:
    assert reveal(Options.model_validate({"password": literal}).password) == literal


@given(
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
    value=st.text(),
    form=st.sampled_from(["prefix", "table"]),
)
def test_any_variable_resolves_to_its_value(name: str, value: str, form: str) -> None:
    given_as = f"env:{name}" if form == "prefix" else {"env": name}
    options = Options.model_validate({"password": given_as}, context={"env": {name: value}})
    assert reveal(options.password) == value
