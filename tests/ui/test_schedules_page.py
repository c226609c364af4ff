"""The schedules page: next fires, lease holder, pause/resume, run now, cron editing with preview."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Dash

JOB = "tarana-sync:cron:0"


def test_schedule_card_shows_fires_lease_and_triggers(dash: Any) -> None:
    d: Dash = dash(TIMEZONE="Africa/Johannesburg")
    d.open("schedules")
    text = d.texts()
    assert "Tarana base-station sync" in text
    assert "Every day at 00:00" in text
    assert "No process holds the scheduler lease" in text  # this test process does not schedule
    fires = d.at.dataframe[0].value
    assert list(fires.columns) == ["When", "Local time", "UTC"]
    assert len(fires) == 5
    assert fires["Local time"].str.contains("00:00 SAST").all()
    assert fires["UTC"].str.contains("22:00 UTC").all()
    assert "Never run yet" in text


def test_lease_holder_is_named(dash: Any) -> None:
    d: Dash = dash(SCHEDULER="true")
    d.open("schedules")
    text = d.texts()
    assert f"Scheduler lease held by **`{d.rt.holder}`** (this dashboard's process)" in text


def test_pause_resume_and_run_now(dash: Any) -> None:
    d: Dash = dash()
    d.open("schedules")
    d.at.button(key=f"pause_{JOB}").click().run()
    assert "Paused **Tarana base-station sync**" in d.texts()
    info = d.rt.scheduler.schedules()[0]
    assert info.paused and info.updated_by == "local operator"
    assert "nothing will fire until it is resumed" in d.texts()
    d.at.button(key=f"resume_{JOB}").click().run()
    assert not d.rt.scheduler.schedules()[0].paused

    d.at.button(key=f"run_{JOB}").click().run()
    assert "Started **Tarana base-station sync**" in d.texts()
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    assert run.triggered_by == "local operator" and str(run.trigger) == "manual"
    d.wait_run(run.id)


def test_cron_edit_validates_and_previews(dash: Any) -> None:
    d: Dash = dash()
    d.open("schedules")
    box = d.at.text_input(key=f"cron_{JOB}")
    box.input("61 * * * *").run()
    errors = "\n".join(e.value for e in d.at.error)
    assert "61 * * * *" in errors and "not valid" in errors
    assert d.at.button(key=f"save_{JOB}").disabled

    d.at.text_input(key=f"cron_{JOB}").input("*/15  * * * *").run()
    assert not d.at.error
    assert "Every 15 minutes" in d.texts()
    preview = d.at.dataframe[1].value
    assert len(preview) == 5
    d.at.button(key=f"save_{JOB}").click().run()
    assert "is now `*/15 * * * *`" in d.texts()
    assert d.rt.scheduler.schedules()[0].cron == "*/15 * * * *"
