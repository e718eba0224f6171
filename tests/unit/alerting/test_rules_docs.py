"""docs/alerting-rules.md keeps up with the code: every key is in a table, every example is valid."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from analytics.alerting.delivery import ReceiverSpec
from analytics.alerting.intake import parse_alerts
from analytics.alerting.rules import Aggregation, Condition, ConditionKind, RuleQuery, RuleSpec, RulesSettings

DOC = (Path(__file__).resolve().parents[3] / "docs" / "alerting-rules.md").read_text()


def keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


@pytest.mark.parametrize(
    "key",
    [
        *keys(RuleSpec),
        *keys(RuleQuery),
        *keys(Condition),
        *keys(ReceiverSpec),
        *keys(RulesSettings),
        *typing.get_args(Aggregation),
        *typing.get_args(ConditionKind),
    ],
)
def test_every_key_has_a_table_row(key: str) -> None:
    first_cell = rf"^\| [^|]*`{re.escape(key)}`[^|]*\|"
    assert re.search(first_cell, DOC, re.MULTILINE), f"docs/alerting-rules.md lacks a row for {key}"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL)


def test_every_toml_example_is_a_valid_configuration() -> None:
    rules = receivers = 0
    for block in blocks("toml"):
        alerting = tomllib.loads(block).get("alerting", {})
        settings = RulesSettings.model_validate({k: v for k, v in alerting.items() if k != "receivers"})
        rules += len(settings.rules)
        for spec in alerting.get("receivers", []):
            assert ReceiverSpec.model_validate(spec).problems() == []
            receivers += 1
    assert rules >= 6 and receivers >= 2


def test_the_intake_example_parses() -> None:
    (example,) = [block for block in blocks("json") if '"version": "4"' in block]
    (alert,) = parse_alerts(json.loads(example), datetime(2025, 3, 1, tzinfo=UTC))
    assert alert.name == "HostDown" and alert.ends_at is None
