"""Cron-style schedules: run an action with fixed params on a 5-field cron expression (UTC).

``[[actions.schedules]]`` rows name the schedule, its cron expression (``minute hour day month weekday``,
as in crontab; parsed by ``croniter``), the action and its params. :class:`ScheduleRunner` is ticked by
the actions service; a schedule whose time came since its last check runs once (missed times while qwq
was down are not caught up), with actor ``schedule:<name>``, audited like every run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from actions.engine import Engine, RunResult
from qwq_core.errors import QwqError

log = logging.getLogger(__name__)


class Schedule(BaseModel):
    """One ``[[actions.schedules]]`` row."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="schedule name (the audit actor is schedule:<name>)")
    cron: str = Field(description='5-field cron expression in UTC, e.g. "0 3 * * *"')
    action: str = Field(description="the action to run")
    params: dict[str, Any] = Field(default_factory=dict, description="the action's params")
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a 5-field cron expression: {value!r}")
        return value


def next_run(cron: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` matches (UTC)."""
    return croniter(cron, after.astimezone(UTC)).get_next(datetime).astimezone(UTC)


class ScheduleRunner:
    """Runs the due schedules on each :meth:`tick`; times are checked from ``start`` on."""

    def __init__(self, schedules: Sequence[Schedule], engine: Engine, *, start: datetime) -> None:
        self.schedules = [schedule for schedule in schedules if schedule.enabled]
        self.engine = engine
        self._next = {schedule.name: next_run(schedule.cron, start) for schedule in self.schedules}

    def upcoming(self) -> dict[str, datetime]:
        """Each schedule's next run time."""
        return dict(self._next)

    def tick(self, now: datetime) -> list[RunResult]:
        """Run every schedule whose next time is at or before ``now`` (once, however many were missed)."""
        results = []
        for schedule in self.schedules:
            if self._next[schedule.name] > now:
                continue
            self._next[schedule.name] = next_run(schedule.cron, now)
            try:
                results.append(self.engine.run(schedule.action, schedule.params, actor=f"schedule:{schedule.name}"))
            except QwqError as exc:  # refused or invalid: logged (and audited when it got to planning)
                log.warning("schedule %s: %s", schedule.name, exc)
        return results


__all__: Sequence[str] = ["Schedule", "ScheduleRunner", "next_run"]
