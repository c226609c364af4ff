"""The sync history page: runs, a run's steps and errors, skipped records, diff, and its actions."""

from __future__ import annotations

from typing import Any

from core.sync import commands
from tests.ui.conftest import Dash, sync_and_wait


def test_no_runs_yet(dash: Any) -> None:
    d: Dash = dash()
    d.open("history")
    assert "No sync has run yet" in d.texts()


def test_runs_table_and_detail(dash: Any) -> None:
    d: Dash = dash()
    d.open("history")
    run = sync_and_wait(d)
    d.at.run()
    table = d.at.dataframe[0].value
    assert list(table["run"]) == [run.id[:8]]
    assert table["trigger"].iloc[0] == "Manual"
    assert table["by"].iloc[0] == "someone else"
    assert table["fetched"].iloc[0] > 0
    text = d.texts()
    assert f"Run {run.id[:8]}" in text
    assert "Sync duration" in text and "Stations online and offline" in text
    tabs = [t.label for t in d.at.tabs]
    assert tabs[0] == "Steps" and tabs[1].startswith("Skipped records")
    steps = d.at.dataframe[1].value
    assert {"begin", "validate", "finish"} <= set(steps["step"])
    skipped = d.at.dataframe[2].value if len(d.at.dataframe) > 2 else None
    if skipped is not None and len(skipped):
        assert skipped["reason"].str.len().min() > 0
    assert len(d.at.get("vega_lite_chart")) >= 3  # duration, station counts, step timeline


def test_failed_run_shows_its_error_and_steps_attempts_and_can_be_retried(dash: Any) -> None:
    d: Dash = dash(SIMULATOR_FAULTS="error_rate=1.0", TARANA_RETRIES="0")
    d.open("history")
    req = commands.request_sync(d.rt.engine, by="ops")
    run = d.wait_run(req.run_id, timeout_s=120)
    assert str(run.status) == "failed"
    d.at.run()
    errors = "\n".join(e.value for e in d.at.error)
    assert "Failed" in errors
    assert run.error and run.error.split(":")[0] in errors
    assert "failed attempt" in "\n".join(e.label for e in d.at.expander)
    d.at.button(key=f"retry_{run.id}").click().run()
    assert "Retrying from where run" in "\n".join(s.value for s in d.at.success)
    retried = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    assert str(retried.trigger) == "retry" and retried.parent_run_id == run.id
    assert retried.triggered_by == "local operator"
    d.wait_run(retried.id, timeout_s=120)


def test_cancel_a_running_sync(dash: Any) -> None:
    d: Dash = dash(SIMULATOR_FAULTS="latency_ms=200", SIMULATOR_STATIONS="200")
    d.open("history")
    req = commands.request_sync(d.rt.engine, by="ops")
    d.wait_run(req.run_id, until=lambda r: str(r.status) == "running")
    d.at.run()
    d.at.button(key=f"cancel_{req.run_id}").click().run()
    assert "Asked run" in "\n".join(s.value for s in d.at.success)
    run = d.wait_run(req.run_id, timeout_s=120)
    assert str(run.status) == "cancelled"
    assert run.cancelled_by == "local operator"


def test_dry_run_shows_its_diff(dash: Any) -> None:
    d: Dash = dash()
    d.open("history")
    sync_and_wait(d, dry_run=True)
    d.at.run()
    tabs = [t.label for t in d.at.tabs]
    assert "Dry-run diff" in tabs
    diff = d.at.dataframe[-1].value
    assert len(diff) > 0 and set(diff["action"]) >= {"insert"}


def test_guarded_deletion_waits_and_is_confirmed_by_an_operator(
    dash: Any, monkeypatch: Any
) -> None:
    from core.runtime import shutdown_runtime

    d: Dash = dash(SIMULATOR_SEED="7")
    d.open("history")
    sync_and_wait(d)
    # The portal now lists a different fleet: deleting the old one needs a person.
    shutdown_runtime()
    monkeypatch.setenv("STATIONSYNC_SIMULATOR_SEED", "8")
    req = commands.request_sync(d.rt.engine, by="ops", delete_stale=True)
    from jobstore import synclogs

    def waiting(_: Any) -> bool:
        log = synclogs.sync_log_for_run(d.rt.db, req.run_id)
        return log is not None and str(log.status) == "needs_confirmation"

    d.wait_run(req.run_id, timeout_s=120, until=waiting)
    d.at.query_params["run"] = req.run_id
    d.at.run()
    log = synclogs.sync_log_for_run(d.rt.db, req.run_id)
    assert log is not None
    assert f"wants to delete {log.delete_candidates:,} stations" in d.texts()
    confirm = d.at.button(key=f"confirm_{log.id}")
    assert confirm.disabled  # not before the operator ticks the box
    d.at.checkbox(key=f"sure_{log.id}").check().run()
    d.at.button(key=f"confirm_{log.id}").click().run()
    assert "Deletion confirmed" in "\n".join(s.value for s in d.at.success), d.texts()
    run = d.wait_run(req.run_id, timeout_s=120)
    assert str(run.status) == "completed"
    done = synclogs.sync_log_for_run(d.rt.db, req.run_id)
    assert done is not None and done.deleted == log.delete_candidates
