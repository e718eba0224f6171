"""Secrets in the configuration: a password or token given literally or as an environment-variable reference.

Use :data:`Secret` as a field type in any options model; it validates to a :class:`pydantic.SecretStr`::

    class Options(BaseModel):
        password: Secret | None = None

    password = "s3cret"                  # literal (keep the file private)
    password = "env:PGPASSWORD"          # the value of $PGPASSWORD when the config is validated
    password = { env = "PGPASSWORD" }    # the same, as a TOML inline table
    password = { value = "env:x" }       # a literal that happens to start with "env:"

A reference to an unset variable is a validation error naming the variable, never the value. The
environment read is ``os.environ`` unless the validation context carries one
(``Model.model_validate(data, context={"env": {...}})``), so tests and the settings loader can pass theirs.
The resolved value prints as ``**********`` in reprs, dumps and ``qwq config show``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo

ENV_PREFIX = "env:"
_FORMS = 'a string, "env:NAME", { env = "NAME" } or { value = "..." }'


def resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """The secret's clear text for :class:`SecretStr` to wrap: environment references looked up."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, Mapping):
        return _from_table(value, info)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"a secret must be {_FORMS}")
    text = str(value)  # TOML `password = 1234` is a password too
    if text.startswith(ENV_PREFIX):
        return _lookup(text[len(ENV_PREFIX) :], info)
    return text


def _from_table(table: Mapping[Any, Any], info: ValidationInfo) -> str:
    keys = set(table)
    if keys == {"env"} and isinstance(table["env"], str):
        return _lookup(table["env"], info)
    if keys == {"value"} and isinstance(table["value"], str):
        return str(table["value"])
    raise ValueError(f"a secret must be {_FORMS}; got a table with keys {sorted(map(str, keys))}")


def _lookup(name: str, info: ValidationInfo) -> str:
    if not name or "=" in name or "\0" in name:
        raise ValueError(f"invalid environment variable name {name!r}")
    env = info.context.get("env") if isinstance(info.context, Mapping) else None
    value = (os.environ if env is None else env).get(name)
    if value is None:
        raise ValueError(f"environment variable {name} is not set")
    return str(value)


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A :class:`SecretStr` given literally, as ``"env:NAME"`` or as ``{ env = "NAME" }``; see the module doc."""


def reveal(secret: SecretStr | None) -> str | None:
    """The clear text of an optional secret, for the one call that needs it (a driver's connect)."""
    return secret.get_secret_value() if secret is not None else None


__all__: Sequence[str] = ["Secret", "reveal", "resolve_secret"]
