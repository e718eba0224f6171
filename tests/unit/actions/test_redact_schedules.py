"""Redaction (secrets never leave in clear) and cron schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr, ValidationError

from actions.redact import MASK, redact, redact_params, scrub, secret_values
from actions.schedules import Schedule, next_run
from qwq_core.secrets import Secret


class Params(BaseModel):
    user: str
    password: Secret
    env: dict[str, str] = {}


def test_secret_fields_and_secret_named_keys_are_masked() -> None:
    params = Params(user="bob", password="s3cret!", env={"DB_PASSWORD": "pw-in-env", "TZ": "UTC"})
    shown = redact_params(params)
    assert shown == {"user": "bob", "password": MASK, "env": {"DB_PASSWORD": MASK, "TZ": "UTC"}}
    assert secret_values(params) == {"s3cret!", "pw-in-env"}
    assert scrub("login s3cret! failed (pw-in-env)", secret_values(params)) == f"login {MASK} failed ({MASK})"


SECRETS = st.text(min_size=3, alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="*"))


@given(SECRETS, st.text(alphabet="abc -"))
def test_no_secret_survives_redaction_and_scrubbing(secret: str, noise: str) -> None:
    value = {"api_key": secret, "nested": [{"token": secret}], "other": SecretStr(secret), "note": noise}
    shown = redact(value)
    assert shown["api_key"] == shown["nested"][0]["token"] == shown["other"] == MASK
    assert secret not in scrub(f"<{secret}>", secret_values(value))


def test_schedule_validation_and_next_run() -> None:
    schedule = Schedule(name="nightly", cron="0 3 * * *", action="containers.restart", params={"container": "x"})
    assert next_run(schedule.cron, datetime(2025, 1, 1, 4, tzinfo=UTC)) == datetime(2025, 1, 2, 3, tzinfo=UTC)
    for bad in ("61 * * * *", "* * * * * *", "daily"):
        with pytest.raises(ValidationError, match="5-field cron"):
            Schedule(name="x", cron=bad, action="a")
