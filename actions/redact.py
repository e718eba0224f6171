"""Keep secrets out of audit records, events, REST answers and logs.

Two complementary nets: values typed as secrets (:class:`pydantic.SecretStr`, hence
:data:`qwq_core.secrets.Secret`) are replaced wherever they sit in a structure, and so are values under
keys that name a secret (``password``, ``token``, ``api_key`` …) even when typed as plain strings (an
environment table of a Compose app, say). Free text that may echo a secret (an exception message) is
scrubbed of every known secret value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

MASK = "**********"
SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|auth", re.I)
"""Key names whose values are masked whatever their type."""


def redact(value: Any) -> Any:
    """A JSON-able copy of ``value`` with secret-typed values and values under secret-named keys masked."""
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, BaseModel):
        return redact(_dump(value))
    if isinstance(value, Mapping):
        return {str(k): MASK if _secret_key(k) and v not in (None, "") else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    return value


def redact_params(params: BaseModel) -> dict[str, Any]:
    """The validated parameters of an action as a JSON-able dict with every secret masked."""
    return dict(redact(params))


def secret_values(value: Any) -> set[str]:
    """Every clear-text secret in ``value`` (secret-typed fields and values under secret-named keys)."""
    found: set[str] = set()
    _collect(value, found, under_secret_key=False)
    return {text for text in found if len(text) >= 3}  # masking "a" everywhere would garble the text


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by the mask (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _secret_key(key: Any) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.search(key))


def _dump(model: BaseModel) -> dict[str, Any]:
    # Walk the model's own fields so SecretStr values stay typed (model_dump(mode="json") would mask them
    # too, but loses the distinction we need in secret_values).
    return {name: getattr(model, name) for name in type(model).model_fields}


def _collect(value: Any, found: set[str], *, under_secret_key: bool) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        _collect(_dump(value), found, under_secret_key=under_secret_key)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect(item, found, under_secret_key=under_secret_key or _secret_key(key))
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect(item, found, under_secret_key=under_secret_key)
    elif under_secret_key and isinstance(value, str | int) and not isinstance(value, bool):
        found.add(str(value))


__all__: Sequence[str] = ["MASK", "SECRET_KEY", "redact", "redact_params", "scrub", "secret_values"]
