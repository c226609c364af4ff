"""Secrets never leave: not in logs, sync errors, the database, pages, exports or exceptions.

The main scenario runs the app's own command line (its runtime, in a child
process, logging at DEBUG) against a simulator started here with credentials
set here: one good sync, one with a wrong password (refused), one in a storm
of 5xx answers. Then the app's runtime renders every page under AppTest, the
CSV export and the map's data route are produced, the command line prints
what it knows of the runs, and every table of the database is dumped as text.
None of it may hold the portal password (right or wrong), the Basic
credentials, any cookie or token the portal issued, or the database password.

A second group of tests uses a hostile portal that quotes the credentials it
received in its error messages, as some gateways' error pages do: the client
holds those secrets and must keep them out of what it raises and logs.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from core import cli, logs
from core.errors import TaranaError
from core.runtime import Runtime
from core.settings import Secret, Settings
from core.tarana.client import TaranaClient
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator
from jobstore.db import Database
from jobstore.stations import query_stations
from pages import _ui
from tests.hostile.driver import SyncDriver
from tests.hostile.server import TOKENS, HostilePortal, Reply
from tests.security.conftest import ROOT, clean_environ, page_text, render, route_body

USER = "secret-tester@example.com"
PORTAL_PASSWORD = "SimPortalPw-Q7x9k2"
WRONG_PASSWORD = "WrongPortalPw-Z3m4r8"
DB_PASSWORD = "DbSecretPw-W8n2q5"


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class RecordingSimulator(Simulator):
    """The simulator, noting every session value it hands out (its cookies carry them all)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued: list[str] = []

    def _login(self, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        status, extra, body = super()._login(headers)
        for name, value in extra:
            if name.lower() == "set-cookie":
                self.issued.append(value.split(";", 1)[0].split("=", 1)[1])
        return status, extra, body


@pytest.fixture
def portal() -> Iterator[RecordingSimulator]:
    sim = RecordingSimulator(stations=40, seed=13)
    sim.username, sim.password = USER, PORTAL_PASSWORD
    sim.start()
    try:
        assert urlsplit(sim.base_url).hostname == "127.0.0.1"
        yield sim
    finally:
        sim.stop()


def with_db_password(url: str) -> str:
    """The URL with a password in it (PostgreSQL on trust auth connects all the same)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


def dump_database(db: Database) -> str:
    """Every row of every table, as text."""
    out: list[str] = []
    with db.read() as conn:
        for table in sorted(sa.inspect(conn).get_table_names()):
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).all()
            out.append(f"== {table} ({len(rows)} rows)")
            out.extend(repr(tuple(r)) for r in rows)
    return "\n".join(out)


def find_secrets(blobs: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} found in {where}"
        for what, secret in secrets.items()
        for where, text in blobs.items()
        if secret and secret in text
    ]


def test_no_secret_survives_a_failing_sync_anywhere(
    db_url: str,
    portal: RecordingSimulator,
    tmp_path: Path,
    app_runtime: Callable[..., Runtime],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = with_db_password(db_url)
    settings = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": url,
        "TARANA_BASE_URL": portal.base_url,
        "TARANA_USERNAME": USER,
        "TARANA_OPERATOR_ID": portal.operator_id,
        "SCHEDULER": "false",
        "LOG_LEVEL": "DEBUG",
        "TARANA_RETRIES": "1",
        "TARANA_BACKOFF_MAX_S": "0.01",
        "WORKERS": "2",
        "POLL_INTERVAL_S": "0.05",
    }
    blobs: dict[str, str] = {}

    def cli_sync(name: str, password: str, *args: str) -> int:
        env = clean_environ(
            {f"STATIONSYNC_{k}": v for k, v in {**settings, "TARANA_PASSWORD": password}.items()}
        )
        done = subprocess.run(
            [sys.executable, "-m", "core", "sync", *args], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        blobs[f"{name} (stdout)"] = done.stdout
        blobs[f"{name} (stderr, the log)"] = done.stderr
        return done.returncode

    assert cli_sync("good sync", PORTAL_PASSWORD) == 0, blobs["good sync (stderr, the log)"][-2000:]
    assert cli_sync("wrong password", WRONG_PASSWORD) == 1
    assert "refused the login" in blobs["wrong password (stdout)"]
    portal.set_faults(Faults(error_rate=1.0))
    assert cli_sync("5xx storm", PORTAL_PASSWORD) == 1
    assert "portal error 5" in blobs["5xx storm (stdout)"]
    portal.set_faults(Faults())
    assert len(portal.issued) >= 8, "two successful logins, four cookies each"
    assert "DEBUG" in blobs["good sync (stderr, the log)"], "the log was captured at DEBUG"

    # the app's runtime, in this process, on the same database and portal
    caplog.set_level(logging.DEBUG)
    env = {**settings, "TARANA_PASSWORD": PORTAL_PASSWORD}
    env.pop("DATA_DIR")
    rt = app_runtime(**env)
    runs = rt.engine.list_runs(function_id="tarana-sync", limit=10)
    assert [str(r.status) for r in runs] == ["failed", "failed", "completed"]
    frame = query_stations(rt.db)
    assert len(frame) > 0
    blobs["CSV export"] = _ui.csv_bytes(frame, rt.settings.timezone).decode("utf-8-sig")
    pages = {
        "stations page": render("stations.py"),
        "map page": render("map.py"),
        "map page, focused": render("map.py", query={"station": str(frame["serial_number"][0])}),
        "schedules page": render("schedules.py"),
    }
    for run in runs:
        pages[f"history page, run {run.id}"] = render("history.py", query={"run": run.id})
    for name, at in pages.items():
        blobs[name] = page_text(at)
    for status in ("online", "offline", "unknown"):
        blobs[f"map route ({status})"] = route_body(f"status={status}")
    capsys.readouterr()
    for args in (["sync-status"], ["runs"], *[["run", r.id] for r in runs]):
        assert cli.main(args) == 0
    printed = capsys.readouterr()
    blobs["command line (runs, sync-status)"] = printed.out + printed.err
    blobs["database dump"] = dump_database(rt.db)
    blobs["in-process log"] = caplog.text
    assert "refused the login" in blobs["database dump"], "the failures were recorded"

    secrets = {
        "the portal password": PORTAL_PASSWORD,
        "the wrong portal password": WRONG_PASSWORD,
        "the Basic credentials": basic(USER, PORTAL_PASSWORD),
        "the wrong Basic credentials": basic(USER, WRONG_PASSWORD),
        "the database password": DB_PASSWORD if url != db_url else "",
        **{f"issued session value {i} ({v[:6]}...)": v for i, v in enumerate(portal.issued)},
    }
    assert not find_secrets(blobs, secrets)


# --- a portal that quotes the credentials back ----------------------------------


def _client(portal: HostilePortal) -> TaranaClient:
    return TaranaClient(
        portal.base_url, portal.username, Secret(portal.password), operator_id=portal.operator_id,
        retries=1, sleep=lambda _s: None, timeout_s=10,
    )  # fmt: skip


PORTAL_SECRETS = {
    "the portal password": HostilePortal().password,
    "the Basic credentials": basic(HostilePortal().username, HostilePortal().password),
    **{f"the {name} cookie": value for name, value in TOKENS.items()},
}


def product_logging(caplog: pytest.LogCaptureFixture, password: str) -> None:
    """Log at DEBUG the way the app configures it (its redaction filter included)."""
    caplog.set_level(logging.DEBUG)
    logs.configure("DEBUG", [password])


def _exception_text(exc: BaseException) -> str:
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("echo", ["login", "data"])
def test_credentials_quoted_by_the_portal_stay_out_of_exceptions_and_logs(
    echo: str, caplog: pytest.LogCaptureFixture, keep_logging: None
) -> None:
    with HostilePortal() as portal:
        product_logging(caplog, portal.password)
        portal.state.echo = echo
        client = _client(portal)
        try:
            with pytest.raises(TaranaError) as info:
                client.fetch_devices("BN")
        finally:
            client.close()
    quoted = _exception_text(info.value)
    assert "refused" in quoted or "portal error" in quoted
    assert not find_secrets({"the exception": quoted, "the log": caplog.text}, PORTAL_SECRETS)


@pytest.mark.parametrize("echo", ["login", "data"])
def test_credentials_quoted_by_the_portal_stay_out_of_the_sync_records(
    echo: str, sqlite_db: Database, caplog: pytest.LogCaptureFixture, keep_logging: None
) -> None:
    with HostilePortal() as portal:
        product_logging(caplog, portal.password)
        portal.state.echo = echo
        driver = SyncDriver(sqlite_db, portal, tarana_password=Secret(portal.password))
        log = driver.sync()
    assert log.errors
    blobs = {"the database": dump_database(sqlite_db), "the log": caplog.text}
    assert not find_secrets(blobs, PORTAL_SECRETS)


def test_settings_and_clients_do_not_show_secrets() -> None:
    settings = Settings(
        tarana_password=Secret(PORTAL_PASSWORD),
        database_url=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:5432/stations",
    )
    client = TaranaClient("http://127.0.0.1:9", USER, Secret(PORTAL_PASSWORD), operator_id="1")
    try:
        shown = " ".join(
            [repr(settings.tarana_password), str(settings.tarana_password), repr(client)]
        )
        shown += f" {settings.tarana_password} {settings.tarana_password!r}"
        shown += Database(settings.database_url).safe_url
    finally:
        client.close()
    assert PORTAL_PASSWORD not in shown and DB_PASSWORD not in shown


@pytest.mark.parametrize("where", ["login", "data"])
def test_a_redirect_never_carries_the_credentials_elsewhere(where: str) -> None:
    with HostilePortal() as portal, HostilePortal() as elsewhere:
        target = (("Location", f"{elsewhere.base_url}/collect"),)
        if where == "login":
            portal.state.login_reply = Reply(307, b"", target)
        else:
            portal.serve_bn_page(Reply(302, b"", target))
        client = _client(portal)
        try:
            with pytest.raises(TaranaError):
                client.fetch_devices("BN")
        finally:
            client.close()
        assert elsewhere.state.seen == [], "the client followed a redirect to another server"
