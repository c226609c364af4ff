"""Bad portal answers: the client raises a TaranaError for each, and a sync fails with the reason.

Each raw body of the corpus is served by a portal double on 127.0.0.1 whose
login works normally, as the answer to a device-list page. The client must
raise ``TaranaInvalidResponseError`` (or, where the connection itself breaks,
``TaranaTransientError`` after its retries), never an httpx or json
exception. A full sync that meets the body must end with the reason in its
log, and the stations stored before must come out untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.engine import RunStatus
from core.errors import TaranaError, TaranaInvalidResponseError, TaranaTransientError
from core.settings import Secret
from core.sync.events import SYNC_FAILED
from core.sync.validate import Invalid, check_bn
from core.tarana.client import TaranaClient
from jobstore import migrate, synclogs
from jobstore.db import Database
from jobstore.synclogs import SyncStatus
from tests.hostile.corpus import (
    BODIES,
    INVALID,
    LOGIN_BODIES,
    TRANSIENT,
    BodyCase,
    good_fleet,
    good_rns,
)
from tests.hostile.driver import SyncDriver, snapshot
from tests.hostile.server import LOGIN_PATH, HostilePortal, Reply

MILLION = "a million items on one page"
FLEET = good_fleet(25)


@pytest.fixture(scope="module")
def portal() -> Iterator[HostilePortal]:
    with HostilePortal(FLEET, good_rns(FLEET)) as server:
        assert server.address[0] == "127.0.0.1"
        yield server


@pytest.fixture(scope="module")
def stored(portal: HostilePortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncDriver]:
    """A database holding the clean fleet, stored by a first, clean sync."""
    path: Path = tmp_path_factory.mktemp("hostile-bodies") / "stationsync.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db)
    portal.state.override = None
    driver = SyncDriver(db, portal)
    log = driver.sync()
    assert log.status == SyncStatus.COMPLETED and log.inserted == len(FLEET)
    try:
        yield driver
    finally:
        db.dispose()


def _client(portal: HostilePortal) -> TaranaClient:
    return TaranaClient(
        portal.base_url,
        portal.username,
        Secret(portal.password),
        operator_id=portal.operator_id,
        concurrency=2,
        retries=2,
        sleep=lambda _s: None,
        timeout_s=20,
    )


@pytest.mark.parametrize("case", BODIES, ids=[c.name for c in BODIES])
def test_the_client_raises_a_tarana_error_for_each_bad_body(
    portal: HostilePortal, case: BodyCase
) -> None:
    portal.serve_bn_page(case.reply(), at_offset=0)
    before = len(portal.state.seen)
    client = _client(portal)
    try:
        report = client.fetch_devices("BN")
    except Exception as exc:  # noqa: BLE001 - the type is what is checked
        assert isinstance(exc, TaranaError), f"{type(exc).__module__}.{type(exc).__name__} escaped"
        assert not isinstance(exc, httpx.HTTPError | json.JSONDecodeError)
        wanted = {INVALID: TaranaInvalidResponseError, TRANSIENT: TaranaTransientError}
        assert isinstance(exc, wanted.get(case.expect, TaranaInvalidResponseError)), repr(exc)
        text = str(exc)
        assert len(text) < 500 and "<script" not in text and "xxxxxxxx" not in text, text[:200]
    else:
        # only the million-item page may be passed on, and then every item is refused
        assert case.name == MILLION, f"a bad body was accepted: {len(report.items)} items"
        kinds = {type(item).__name__ for item in report.items}
        assert kinds == {"dict"}
        with pytest.raises(Invalid, match="serial"):
            check_bn(report.items[0])
    finally:
        client.close()
        portal.state.override = None
    seen = portal.state.seen[before:]
    assert [s.path for s in seen][:1] == [LOGIN_PATH], "the client logs in first"
    assert any(s.path.endswith("/devices") for s in seen), "then asks for the page"


@pytest.mark.parametrize("case", LOGIN_BODIES, ids=[c.name for c in LOGIN_BODIES])
def test_a_bad_login_answer_is_a_tarana_error_and_no_data_request_follows(
    portal: HostilePortal, case: BodyCase
) -> None:
    portal.state.login_reply = case.reply()
    before = len(portal.state.seen)
    client = _client(portal)
    try:
        with pytest.raises(Exception) as info:  # the type is checked below
            client.fetch_devices("BN")
    finally:
        client.close()
        portal.state.login_reply = None
    exc = info.value
    assert isinstance(exc, TaranaError), f"{type(exc).__module__}.{type(exc).__name__} escaped"
    wanted = {INVALID: TaranaInvalidResponseError, TRANSIENT: TaranaTransientError}[case.expect]
    assert isinstance(exc, wanted), repr(exc)
    seen = portal.state.seen[before:]
    assert all(s.path == LOGIN_PATH for s in seen), "no data request without a session"
    assert all("x-injected" not in s.headers for s in seen)


@pytest.mark.parametrize("retries", [1, 2, 6])
def test_a_login_that_keeps_failing_is_not_retried_inside_every_retry(
    portal: HostilePortal, retries: int
) -> None:
    """One request gives a broken login ``retries + 1`` tries, not that number squared."""
    portal.state.login_reply = Reply(
        502, b"<html>Bad gateway</html>", (("Content-Type", "text/html"),)
    )
    before = len(portal.state.seen)
    client = TaranaClient(
        portal.base_url, portal.username, Secret(portal.password), operator_id=portal.operator_id,
        retries=retries, sleep=lambda _s: None,
    )  # fmt: skip
    try:
        with pytest.raises(TaranaTransientError) as info:
            client.device_page(0)
    finally:
        client.close()
        portal.state.login_reply = None
    logins = [s for s in portal.state.seen[before:] if s.path == LOGIN_PATH]
    assert len(logins) <= retries + 1, f"{len(logins)} logins for one request"
    assert str(info.value).count("gave up") == 1, str(info.value)


@pytest.mark.parametrize("case", BODIES, ids=[c.name for c in BODIES])
def test_a_sync_meeting_a_bad_body_records_why_and_keeps_the_table(
    portal: HostilePortal, stored: SyncDriver, case: BodyCase
) -> None:
    before = snapshot(stored.db)
    portal.serve_bn_page(case.reply(), at_offset=10)  # the second page: some were fetched
    started = time.monotonic()
    try:
        log = stored.sync()
    finally:
        portal.state.override = None
    took = time.monotonic() - started
    assert snapshot(stored.db) == before, "stored stations changed"
    run = stored.engine.get_run(str(log.run_id))
    if case.name == MILLION and log.status != SyncStatus.FAILED:
        # passed on by the client (it may also refuse the page: then the sync fails as below):
        # a million skips, each with its reason
        assert (
            log.status == SyncStatus.COMPLETED_WITH_WARNINGS and run.status == RunStatus.COMPLETED
        )
        assert log.skipped == 1_000_000 and log.inserted == log.updated == log.deleted == 0
        reasons = {reason for _, reason in synclogs.skipped_records(stored.db, log.id)[:100]}
        assert reasons == {"no serial number"}
        assert took < 120
        return
    assert log.status == SyncStatus.FAILED and run.status == RunStatus.FAILED
    assert log.inserted == log.updated == log.deleted == log.missing == 0
    name = "TaranaInvalidResponseError" if case.expect == INVALID else "TaranaTransientError"
    assert log.errors and all(name in e for e in log.errors[:-1]), log.errors[:2]
    assert all(e.startswith("fetch-bn-0000 (attempt") for e in log.errors[:-1])
    assert run.error is not None and name in run.error
    failed = [e for e in stored.engine.list_events(SYNC_FAILED) if e.data.get("sync_id") == log.id]
    assert len(failed) == 1


def test_after_the_bad_bodies_a_clean_sync_still_works(
    portal: HostilePortal, stored: SyncDriver
) -> None:
    before = snapshot(stored.db)
    portal.state.override = None
    log = stored.sync()
    assert log.status == SyncStatus.COMPLETED and log.unchanged == len(FLEET)
    assert snapshot(stored.db) == before
