"""Access in the pages: open by default; with an admin list, only signed-in admins act,
and the check is made when the action runs, whatever the page showed."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Dash

ADMIN = {"is_logged_in": True, "email": "ops@example.com"}
VIEWER = {"is_logged_in": True, "email": "viewer@example.com"}


def test_open_mode_records_local_operator(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    assert "recorded as **local operator**" in d.texts()
    assert not d.at.button(key="sync_now").disabled


def test_signed_out_user_can_read_but_not_act(dash: Any) -> None:
    d: Dash = dash(ADMINS="ops@example.com")
    d.at.user = {"is_logged_in": False}
    d.open("stations")
    assert d.at.button(key="sync_now").disabled
    assert "actions need an administrator" in d.texts()
    assert [b.label for b in d.at.button if b.key == "_sign_in"] == ["Sign in"]
    d.at.switch_page("pages/schedules.py").run()
    assert d.at.button(key="pause_tarana-sync:cron:0").disabled


def test_admin_acts_under_their_own_name(dash: Any) -> None:
    d: Dash = dash(ADMINS="ops@example.com")
    d.at.user = ADMIN
    d.open("stations")
    assert "Signed in as **ops@example.com** (administrator)" in d.texts()
    d.at.button(key="sync_now").click().run()
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    assert run.triggered_by == "ops@example.com"
    d.wait_run(run.id)


def test_guard_runs_at_action_time_whatever_the_page_showed(dash: Any) -> None:
    d: Dash = dash(ADMINS="ops@example.com")
    d.at.user = ADMIN
    d.open("schedules")
    pause = d.at.button(key="pause_tarana-sync:cron:0")
    assert not pause.disabled
    # The session's identity changes (signed out elsewhere, a forged click...) before the click.
    d.at.user = VIEWER
    pause.click().run()
    warnings = "\n".join(w.value for w in d.at.warning)
    assert "viewer@example.com is not an administrator" in warnings
    assert not d.rt.scheduler.schedules()[0].paused

    d.at.user = ADMIN
    d.at.switch_page("pages/stations.py").run()
    button = d.at.button(key="sync_now")
    assert not button.disabled
    d.at.user = VIEWER
    button.click().run()
    assert "not an administrator" in "\n".join(w.value for w in d.at.warning)
    assert d.rt.engine.list_runs(function_id="tarana-sync") == []
