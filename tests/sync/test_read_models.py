"""The read models pages use: filtered station frames, summaries and sync history."""

from __future__ import annotations

import time

import pandas as pd

from jobstore import stations, synclogs
from jobstore.db import Database
from jobstore.stations import WRITE_COLUMNS, StationFilter


def row(serial: str, **values: object) -> tuple[object, ...]:
    base: dict[str, object] = {
        "serial_number": serial, "hostname": f"{serial}-BN-45", "site_name": "Site",
        "active_connections": 0, "market": "JHB Gauteng", "lat": -26.0, "lng": 28.0,
        "region": "South Africa", "height_m": 10.0, "azimuth_deg": 45.0, "band": "5ghz",
        "device_status": "online", "region_id": "1", "market_id": "2", "site_id": "3",
        "cell_id": "4", "sector_id": serial, "cell_name": "X1", "sector_name": "X1-BN-45",
        "first_seen": 100.0, "last_seen": 100.0, "last_changed": 100.0, "missing_since": None,
    }  # fmt: skip
    base.update(values)
    return tuple(base[c] for c in WRITE_COLUMNS)


def fill(db: Database) -> None:
    stations.upsert_stations(
        db,
        [
            row("S1", site_name="100% Tower_A", active_connections=5),
            row("S2", site_name="100 Tower", market="KZN", device_status="offline"),
            row("S3", site_name="Back\\slash 'quote'; DROP TABLE base_stations; --", market="CAPE"),
            row("S4", site_name="<b>Mall</b>", hostname="X9-BN-0", active_connections=2),
            row("S5", site_name="Gone", missing_since=150.0, last_seen=120.0),
        ],
    )


def serials(frame: pd.DataFrame) -> set[str]:
    return set(frame["serial_number"])


def test_search_is_literal_and_case_insensitive(db: Database) -> None:
    fill(db)
    q = lambda text: serials(stations.query_stations(db, StationFilter(search=text)))
    assert q("100%") == {"S1"}
    assert q("_a") == {"S1"}
    assert q("tower") == {"S1", "S2"}
    assert q("\\") == {"S3"}
    assert q("'; drop table") == {"S3"}
    assert q("<B>") == {"S4"}
    assert q("x9-bn") == {"S4"}
    assert q("s5") == {"S5"}
    assert q(".*") == set()
    assert stations.count_stations(db) == 5


def test_filters_combine_in_sql(db: Database) -> None:
    fill(db)
    f = lambda **kw: serials(stations.query_stations(db, StationFilter(**kw)))
    assert f(markets=("KZN", "CAPE")) == {"S2", "S3"}
    assert f(statuses=("offline",)) == {"S2"}
    assert f(min_connections=2) == {"S1", "S4"}
    assert f(markets=("JHB Gauteng",), min_connections=3, search="tower") == {"S1"}
    frame = stations.query_stations(db)
    assert list(frame.columns) == list(stations.STATION_COLUMNS)
    assert frame["lat"].dtype == "float64" and frame["active_connections"].dtype == "int64"
    assert stations.market_names(db) == ["CAPE", "JHB Gauteng", "KZN"]
    summary = stations.station_summary(db)
    assert summary == {
        "total": 5, "online": 4, "offline": 1, "missing": 1, "total_connections": 7,
        "average_connections": 7 / 5, "markets": 3,
    }  # fmt: skip


def test_last_seen_of_present_stations_follows_the_latest_full_sync(db: Database) -> None:
    fill(db)
    synclogs.create_log(
        db, {"id": "a" * 32, "status": "completed", "trigger_type": "cron", "started_at": 200.0}
    )
    synclogs.update_log(db, "a" * 32, seen_at=300.0, completed_at=310.0)
    frame = stations.query_stations(db).set_index("serial_number")
    assert frame.loc["S1", "last_seen"] == 300.0
    assert frame.loc["S5", "last_seen"] == 120.0  # missing: the time it was last seen


def test_sync_logs_read_back(db: Database) -> None:
    now = time.time()
    for i, status in enumerate(["completed", "failed", "running"]):
        synclogs.create_log(
            db,
            {"id": f"s{i}", "run_id": f"r{i}", "status": status, "trigger_type": "manual",
             "started_at": now + i, "errors": "[]"},
        )  # fmt: skip
    synclogs.add_to_log(db, "s1", errors=["first", "second"], retries=3)
    synclogs.add_to_log(db, "s1", errors=[f"e{i}" for i in range(30)])
    logs = synclogs.list_sync_logs(db)
    assert [l.id for l in logs] == ["s2", "s1", "s0"]
    failed = synclogs.get_sync_log(db, "s1")
    assert failed is not None and failed.retries == 3 and len(failed.errors) == 32
    assert synclogs.sync_log_for_run(db, "r0") == synclogs.get_sync_log(db, "s0")
    assert synclogs.latest_sync_log(db) == logs[0]
    assert synclogs.latest_sync_log(db, finished_only=True) == failed
    assert synclogs.replace_skipped(db, "s0", [("S1", "why"), (None, "no serial")]) == 2
    assert synclogs.skipped_records(db, "s0") == [("S1", "why"), (None, "no serial")]
    history = synclogs.sync_history_frame(db)
    assert list(history["sync_id"]) == ["s0", "s1", "s2"]
    assert {"started_at", "duration_s", "status", "fetched", "online", "offline"} <= set(
        history.columns
    )
    assert str(history["started_at"].dtype).startswith("datetime64")


def test_work_time_counts_a_step_that_failed(db: Database) -> None:
    from core.engine import Engine, Function, On, Registry
    from core.errors import NonRetriableError

    def handler(ctx):  # type: ignore[no-untyped-def]
        ctx.step.run("quick", lambda: 1)

        def slow_failure() -> None:
            time.sleep(0.2)
            raise NonRetriableError("the portal refused us")

        ctx.step.run("slow", slow_failure)

    reg = Registry()
    reg.add(Function("f", handler, triggers=(On("go"),)))
    engine = Engine(db, reg)
    run_id = engine.send("go").started[0]
    engine.run_once()
    assert engine.get_run(run_id).status.value == "failed"
    assert synclogs.step_seconds(db, run_id) >= 0.2
