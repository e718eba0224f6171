"""The engine with an in-memory action: idempotency, audit, redaction, locks, timeouts, retries."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from actions.engine import Engine, audit
from actions.locks import lock_file
from actions.redact import MASK
from qwq_core.errors import ActionError, ConfigError, NotFoundError
from qwq_core.store import LocalStore
from tests.unit.actions.fakes import RetrySetValue, SetValue

SECRET = "hunter2-very-secret"


@pytest.fixture
def action() -> SetValue:
    return SetValue()


@pytest.fixture
def engine(store: LocalStore, action: SetValue, tmp_path: Path) -> Engine:
    return Engine(store, extra={"test.set": action, "test.retry_set": RetrySetValue()}, home=tmp_path, lock_wait=5)


def test_apply_then_second_identical_run_is_noop(engine: Engine, action: SetValue, store: LocalStore) -> None:
    first = engine.run("test.set", {"key": "a", "value": 1}, actor="cli:me")
    assert (first.outcome, len(first.plan.changes), action.state) == ("applied", 1, {"a": 1})
    second = engine.run("test.set", {"key": "a", "value": 1}, actor="cli:me")
    assert second.outcome == "noop"
    assert second.plan.empty
    trail = audit(store)
    assert trail["outcome"].to_list() == ["noop", "applied"]
    assert trail["run_id"].to_list() == [second.audit_id, first.audit_id]
    kinds = store.events(kind="action.*")["kind"].to_list()
    assert kinds == ["action.applied", "action.applied"]


def test_dry_run_changes_nothing_but_is_recorded(engine: Engine, action: SetValue, store: LocalStore) -> None:
    result = engine.run("test.set", {"key": "a", "value": 1}, actor="api", dry_run=True)
    assert result.outcome == "planned"
    assert action.state == {}
    assert store.events(kind="action.planned").height == 1


def test_secrets_never_reach_audit_events_or_results(engine: Engine, store: LocalStore) -> None:
    params = {"key": "s", "value": 1, "password": SECRET, "fail_times": 1}
    failed = engine.run("test.set", params, actor="cli:me")
    assert failed.outcome == "failed"
    assert SECRET not in (failed.error or "") and MASK in (failed.error or "")
    assert failed.rolled_back == ("key:s",)
    applied = engine.run("test.set", params, actor="cli:me")
    assert applied.outcome == "applied"
    assert SECRET not in json.dumps(applied.as_dict())
    dump = store.sql("SELECT * FROM events").write_csv()
    assert SECRET not in dump
    assert json.loads(audit(store)["params"][0])["password"] == MASK


def test_invalid_params_and_unknown_actions_are_bad_input(engine: Engine, store: LocalStore) -> None:
    with pytest.raises(ConfigError) as caught:
        engine.run("test.set", {"key": "a", "value": "many", "password": SECRET}, actor="t")
    assert [issue.key for issue in caught.value.issues] == ["params.value"]
    with pytest.raises(NotFoundError, match="test.set"):
        engine.run("nope", {}, actor="t")
    assert store.events(kind="action.*").height == 0


def test_one_target_never_interleaves(engine: Engine, action: SetValue) -> None:
    threads = [
        threading.Thread(
            target=engine.run, args=("test.set", {"key": "k", "value": i, "sleep": 0.2}), kwargs={"actor": "t"}
        )
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert action.max_active == 1
    assert action.state["k"] in (0, 1, 2)


def test_distinct_targets_run_in_parallel(engine: Engine, action: SetValue) -> None:
    threads = [
        threading.Thread(
            target=engine.run, args=("test.set", {"key": f"k{i}", "value": 1, "sleep": 0.3}), kwargs={"actor": "t"}
        )
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert action.max_active == 2


def test_timeout_fails_the_run_and_keeps_the_lock_until_apply_ends(engine: Engine, action: SetValue) -> None:
    slow = engine.run("test.set", {"key": "t", "value": 1, "sleep": 1.0}, actor="t", timeout=0.2)
    assert slow.outcome == "failed"
    assert "timed out after 0.2s" in (slow.error or "")
    engine.lock_wait = 0.1
    with pytest.raises(ActionError, match="busy"):
        engine.run("test.set", {"key": "t", "value": 2}, actor="t")
    engine.lock_wait = 5
    after = engine.run("test.set", {"key": "t", "value": 2}, actor="t")
    assert after.outcome == "applied"
    assert action.max_active == 1


def test_retries_only_for_retry_safe_actions(engine: Engine) -> None:
    engine.retry_backoff = 0.01
    unsafe = engine.run("test.set", {"key": "r", "value": 1, "fail_times": 1}, actor="t")
    assert (unsafe.outcome, unsafe.attempts) == ("failed", 1)
    safe = engine.run("test.retry_set", {"key": "r", "value": 1, "fail_times": 2}, actor="t")
    assert (safe.outcome, safe.attempts) == ("applied", 3)
    once = engine.run("test.retry_set", {"key": "q", "value": 1, "fail_times": 1}, actor="t", retry=False)
    assert (once.outcome, once.attempts) == ("failed", 1)


def test_progress_is_reported_live(engine: Engine) -> None:
    seen: list[tuple[str, float, str]] = []
    engine.run(
        "test.set",
        {"key": "p", "value": 1},
        actor="t",
        on_progress=lambda s: seen.append((s.state, s.fraction, s.message)),
    )
    assert ("applying", 0.5, "halfway") in seen
    assert seen[-1][:2] == ("done", 1.0)
    assert engine.runs()[0]["outcome"] == "applied"


HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"actor": "cli:other", "action": "test.set", "pid": os.getpid()}).encode())
print("locked", flush=True)
time.sleep(30)
"""


def test_lock_file_excludes_other_processes(engine: Engine, tmp_path: Path) -> None:
    path = lock_file(tmp_path / "locks", "key:x")
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        engine.lock_wait = 0.3
        with pytest.raises(ActionError, match=r"cli:other running test.set \(pid \d+\)"):
            engine.run("test.set", {"key": "x", "value": 1}, actor="t")
    finally:
        holder.kill()
        holder.wait()
    assert engine.run("test.set", {"key": "x", "value": 1}, actor="t").outcome == "applied"
