"""The base stations page: empty state, Sync Now and its live progress, filters, KPIs, refusals."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Dash, sync_and_wait


def click_sync(d: Dash) -> None:
    d.at.button(key="sync_now").click().run()
    assert not d.at.exception, [e.value for e in d.at.exception]


def test_empty_database_says_how_to_start(dash: Any) -> None:
    d: Dash = dash()
    at = d.open("stations")
    text = d.texts()
    assert "No base stations yet" in text
    assert "No sync has finished yet" in text
    assert not at.button(key="sync_now").disabled
    assert [m.value for m in at.metric][:1] == ["0"]


def test_sync_now_follows_the_run_and_refreshes_the_table(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    click_sync(d)
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    assert run.triggered_by == "local operator"
    d.wait_run(run.id)
    d.at.run()
    text = d.texts()
    assert "Sync completed" in text
    assert "Last sync" not in text  # the banner already says it
    total = int(d.at.metric[0].value.replace(",", ""))
    assert total > 0
    frame = d.at.dataframe[0].value
    assert len(frame) == total
    assert {"site_name", "hostname", "serial_number", "status", "active_connections"} <= set(
        frame.columns
    )
    assert not d.at.button(key="sync_now").disabled
    d.at.button(key="sync_dismiss").click().run()
    assert "Last sync: just now" in d.texts()


def test_kpis_and_filters(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    sync_and_wait(d)
    d.at.run()
    labels = [m.label for m in d.at.metric]
    assert labels == ["Base stations", "Online", "Offline", "Active connections", "Markets"]
    online = int(d.at.metric[1].value.replace(",", ""))
    total = int(d.at.metric[0].value.replace(",", ""))
    assert d.at.metric[1].delta.endswith("%")

    d.at.multiselect(key="stations_statuses").select("online").run()
    assert len(d.at.dataframe[0].value) == online

    frame = d.at.dataframe[0].value
    serial = str(frame["serial_number"].iloc[0])
    d.at.multiselect(key="stations_statuses").unselect("online").run()
    d.at.text_input(key="stations_search").input(serial.lower()).run()
    found = d.at.dataframe[0].value
    assert list(found["serial_number"]) == [serial]
    assert f"1** of {total:,}" in d.texts()

    d.at.text_input(key="stations_search").input("no such station %_").run()
    assert "No base station matches these filters" in d.texts()

    # The choice follows the operator to the map page.
    d.at.switch_page("pages/map.py").run()
    assert d.at.text_input(key="map_search").value == "no such station %_"


def test_a_running_sync_disables_the_button_and_a_second_start_is_refused(dash: Any) -> None:
    d: Dash = dash(SIMULATOR_FAULTS="latency_ms=150", SIMULATOR_STATIONS="200")
    d.open("stations")
    click_sync(d)
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    assert run.status.active
    assert d.at.button(key="sync_now").disabled
    assert "Sync running" in d.texts()

    # Another session whose page still shows the button enabled presses it: refused, followed.
    other = Dash()
    other.open("stations")
    assert other.at.button(key="sync_now").disabled  # it sees the run too
    from core.sync import commands

    refused = commands.request_sync(d.rt.engine, by="second user")
    assert not refused.started and refused.run_id == run.id
    assert len(d.rt.engine.list_runs(function_id="tarana-sync")) == 1
    d.wait_run(run.id, timeout_s=120)
    d.at.run()
    assert "Sync completed" in d.texts()


def test_page_follows_a_run_started_elsewhere(dash: Any) -> None:
    d: Dash = dash(SIMULATOR_FAULTS="latency_ms=150", SIMULATOR_STATIONS="200")
    from core.sync import commands

    d.open("stations")
    req = commands.request_sync(d.rt.engine, by="cron-like operator")
    d.at.run()
    text = d.texts()
    assert "A sync is already running" in text
    assert "cron-like operator" in text
    assert d.at.button(key="sync_now").disabled
    d.wait_run(req.run_id, timeout_s=120)
    d.at.run()
    assert "Sync completed" in d.texts()


def test_failing_portal_shows_why(dash: Any) -> None:
    d: Dash = dash(SIMULATOR_FAULTS="error_rate=1.0", TARANA_RETRIES="0")
    d.open("stations")
    click_sync(d)
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    d.wait_run(run.id, timeout_s=120)
    d.at.run()
    errors = "\n".join(e.value for e in d.at.error)
    assert "Sync failed" in errors
    d.at.button(key="sync_dismiss").click().run()
    assert "Last sync failed" in d.texts()
    assert not d.at.exception


def test_dry_run_option_is_passed(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    d.at.checkbox(key="sync_opt_dry_run").check().run()
    assert "Next sync: dry run" in d.texts()
    click_sync(d)
    run = d.rt.engine.list_runs(function_id="tarana-sync", limit=1)[0]
    d.wait_run(run.id)
    d.at.run()
    assert "dry run, nothing written" in d.texts()
    assert "No base stations yet" in d.texts()


def test_selected_row_links_to_the_map(dash: Any) -> None:
    d: Dash = dash()
    d.open("stations")
    sync_and_wait(d)
    d.at.run()
    assert "Select a row to show that station on the map" in d.texts()


def test_database_unreachable_is_a_clear_message(dash: Any) -> None:
    d: Dash = dash(DATABASE_URL="postgresql://nobody@127.0.0.1:1/nowhere")
    for page in ("stations", "map", "history", "schedules"):
        at = d.open(page)
        assert not at.exception
        message = "\n".join(e.value for e in at.error)
        assert "Could not start Stationsync" in message
        assert "database" in message.lower()
        assert "Traceback" not in message


def test_bad_setting_is_a_clear_message(dash: Any) -> None:
    d: Dash = dash(TIMEZONE="Mars/Olympus_Mons")
    at = d.open("stations")
    message = "\n".join(e.value for e in at.error)
    assert "STATIONSYNC_TIMEZONE" in message
    assert "restart the dashboard" in message


def test_poll_interval_is_fast_only_while_a_run_is_active(dash: Any) -> None:
    d: Dash = dash(UI_POLL_ACTIVE_S="0.5", UI_POLL_IDLE_S="45")
    from pages import _ui

    d.open("stations")
    assert _ui.poll_every(d.rt, True) == 0.5
    assert _ui.poll_every(d.rt, False) == 45
