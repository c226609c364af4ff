"""The client against the simulator over real HTTP: auth, envelopes, retries, paging."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.clock import FakeClock
from core.errors import (
    TaranaAuthError,
    TaranaError,
    TaranaInvalidResponseError,
    TaranaRateLimitedError,
    TaranaRejectedError,
    TaranaTransientError,
)
from core.settings import Secret
from core.tarana.client import TaranaClient
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator


class Sleeps:
    """An injected sleep that records how long it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.calls.append(seconds)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(stations=700, seed=7) as simulator:
        yield simulator


def client_for(sim: Simulator, password: str | None = None, **kwargs: Any) -> TaranaClient:
    kwargs.setdefault("sleep", Sleeps())
    return TaranaClient(
        sim.base_url,
        sim.username,
        Secret(sim.password if password is None else password),
        operator_id=sim.operator_id,
        **kwargs,
    )


def serials(records: list[dict[str, Any]]) -> list[str]:
    return [r["serialNumber"] for r in records]


def test_login_keeps_session_cookies_out_of_sight(sim: Simulator) -> None:
    with client_for(sim) as client:
        client.login()
        assert sim.stats["logins"] == 1 and client.logins == 1
        page = client.device_page(0)
        assert page.count == 10 and page.total_count == 700 and page.offset == 0
        assert sim.stats["logins"] == 1, "the cookie, not a new login, authenticates"
        shown = repr(client) + str(vars(client))
        assert sim.password not in shown and "eyJ" not in shown


def test_full_fetch_equals_the_fleet(sim: Simulator) -> None:
    progress: list[tuple[int, int]] = []
    with client_for(sim) as client:
        report = client.fetch_devices(
            "BN", on_page=lambda done, total: progress.append((done, total))
        )
    assert serials(report.items) == serials(sim.bn_records())
    assert report.items == sim.bn_records()
    assert report.pages == 71 and report.complete and not report.total_mismatch
    assert report.duplicates == [] and report.retries == 0
    assert report.total_count == 700 and report.next_offset == 700
    assert [done for done, _ in progress] == list(range(1, 72))
    assert progress[0][1] == 71 and progress[-1] == (71, 71)


def test_fetch_rns_and_untyped(sim: Simulator) -> None:
    with client_for(sim) as client:
        rns = client.fetch_devices("RN")
        everything = client.fetch_devices(None)
    assert serials(rns.items) == serials(sim.rn_records())
    assert len(everything.items) == 2100 and everything.complete


def test_max_pages_then_resume_from_next_offset(sim: Simulator) -> None:
    with client_for(sim) as client:
        first = client.fetch_devices("BN", max_pages=3)
        assert len(first.items) == 30 and first.pages == 3
        assert not first.complete and first.next_offset == 30 and not first.total_mismatch
        rest = client.fetch_devices("BN", start_offset=first.next_offset)
    assert rest.complete and not rest.total_mismatch
    assert serials(first.items + rest.items) == serials(sim.bn_records())


def test_duplicates_inside_the_list_are_reported() -> None:
    with Simulator(stations=700, faults=Faults(malformed=0.08)) as sim, client_for(sim) as client:
        report = client.fetch_devices("BN")
        dups = sorted(s for s, why in sim.malformed_serials().items() if why == "duplicate_serial")
    assert dups and sorted(report.duplicates) == dups
    with_serial = serials([r for r in report.items if "serialNumber" in r])
    assert len(with_serial) == len(set(with_serial))
    assert report.complete and report.total_mismatch  # totalCount counts the copies


def test_churn_during_paging_ends_deduplicated_with_a_report() -> None:
    with Simulator(stations=300, faults=Faults(churn=0.5)) as sim:
        with client_for(sim, concurrency=1) as client:
            report = client.fetch_devices("BN")
        stats = sim.stats
        assert stats["churn_inserts"] + stats["churn_removes"] > 10
        got = serials(report.items)
        assert len(got) == len(set(got))
        assert report.complete and report.duplicates, "inserts ahead of the offset repeat items"
        sim.set_faults(Faults())
        with client_for(sim) as client:
            again = client.fetch_devices("BN")
        assert sorted(serials(again.items)) == sorted(serials(sim.bn_records()))
        assert not again.total_mismatch


def test_session_expiry_means_one_new_login_and_success() -> None:
    clock = FakeClock()
    with Simulator(stations=200, clock=clock) as sim, client_for(sim) as client:

        def expire_midway(done: int, total: int) -> None:
            if done == 5:
                clock.advance(3601)

        report = client.fetch_devices("BN", on_page=expire_midway)
        assert report.complete and len(report.items) == 200
        assert sim.stats["logins"] == 2 and client.logins == 2
        assert sim.stats["status.401"] >= 1


def test_concurrent_first_requests_share_one_login(sim: Simulator) -> None:
    with client_for(sim) as client:
        threads = [threading.Thread(target=client.device_page, args=(k * 10,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sim.expire_sessions()
        client.fetch_devices("BN", max_pages=16)
    assert sim.stats["logins"] == 2


def test_refused_twice_is_an_auth_error() -> None:
    with Simulator(stations=20, faults=Faults(session_ttl_s=0)) as sim:
        with client_for(sim) as client, pytest.raises(TaranaAuthError) as caught:
            client.device_page(0)
        assert caught.value.status_code == 401
        assert sim.stats["logins"] == 2, "exactly one fresh login before giving up"


def test_refused_password_is_an_auth_error_without_the_password(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-Wrong-Password"
    caplog.set_level(logging.DEBUG)
    with client_for(sim, password=secret) as client, pytest.raises(TaranaAuthError) as caught:
        client.fetch_devices("BN")
    error: BaseException | None = caught.value
    while error is not None:
        assert secret not in str(error) and secret not in repr(error)
        error = error.__cause__ or error.__context__
    assert "Incorrect username or password" in str(caught.value)
    assert secret not in caplog.text
    assert sim.stats["logins_refused"] == 1, "a refused login is not retried"


def test_server_errors_are_retried_and_counted() -> None:
    sleeps = Sleeps()
    with Simulator(stations=700, faults=Faults(error_rate=0.3)) as sim:
        with client_for(sim, sleep=sleeps, retries=15, backoff_max_s=2) as client:
            report = client.fetch_devices("BN")
        assert serials(report.items) == serials(sim.bn_records())
        # speculative pages past the end may fail once and not be retried
        assert 0 < report.retries <= sim.stats["server_errors"]
        assert report.retries == client.retries == len(sleeps.calls)
        assert all(0 <= s <= 2 for s in sleeps.calls)


def test_rate_limits_honour_retry_after_and_back_off_concurrency() -> None:
    sleeps = Sleeps()
    faults = Faults(rate_limit_every=10, rate_limit_burst=3, retry_after_s=0.25)
    with Simulator(stations=700, faults=faults) as sim:
        with client_for(sim, sleep=sleeps, retries=15, concurrency=8) as client:
            report = client.fetch_devices("BN")
            assert client.lowest_concurrency < 8
        assert serials(report.items) == serials(sim.bn_records())
        assert 0 < report.retries <= sim.stats["rate_limited"]
        assert sleeps.calls == [0.25] * report.retries


def test_timeouts_are_transient_then_succeed() -> None:
    faults = Faults(timeout_rate=0.3, hang_s=3)
    with Simulator(stations=100, faults=faults) as sim:
        with client_for(sim, timeout_s=0.25, retries=15, concurrency=4) as client:
            client.login()
            report = client.fetch_devices("BN")
        assert serials(report.items) == serials(sim.bn_records())
        assert sim.stats["hangs"] > 0 and report.retries > 0


def test_retry_budget_exhausted_is_transient_not_httpx() -> None:
    sleeps = Sleeps()
    with (
        Simulator(stations=20, faults=Faults(error_rate=1.0)) as sim,
        client_for(sim, sleep=sleeps, retries=2) as client,
        pytest.raises(TaranaTransientError, match="gave up after 3 attempts") as caught,
    ):
        client.device_page(0)
    assert not isinstance(caught.value, httpx.HTTPError)
    assert len(sleeps.calls) == 2


def test_rate_limit_budget_exhausted_keeps_its_type() -> None:
    faults = Faults(rate_limit_every=1, rate_limit_burst=1000, retry_after_s=3)
    with Simulator(stations=20, faults=faults) as sim, client_for(sim, retries=1) as client:
        client.device_page(0)  # the first data request passes, then the burst starts
        with pytest.raises(TaranaRateLimitedError) as caught:
            client.device_page(0)
    assert caught.value.retry_after == 3


def test_unreachable_portal_is_transient_not_httpx() -> None:
    sim = Simulator(stations=10)
    sim.start()
    sim.stop()
    with client_for(sim, retries=1) as client, pytest.raises(TaranaTransientError) as caught:
        client.login()
    assert isinstance(caught.value.__cause__, TaranaTransientError | httpx.HTTPError)


def test_broken_and_unknown_endpoints(sim: Simulator) -> None:
    with client_for(sim, retries=1) as client:
        with pytest.raises(TaranaTransientError, match="500"):
            client.call("POST", "/api/tmq/v1/radios/search", json_body={"query": {}})
        with pytest.raises(TaranaRejectedError) as count:
            client.call("POST", "/api/tmq/v5/radios/count", json_body={})
        assert count.value.status_code == 400
        with pytest.raises(TaranaRejectedError) as unknown:
            client.call("GET", "/api/nqs/v1/nothing")
        assert unknown.value.status_code == 404 and "No route" in str(unknown.value)
        with pytest.raises(TaranaRejectedError) as device:
            client.device("S134F0000000000")
        assert device.value.status_code == 404


@pytest.mark.parametrize("fault", ["garbage_rate", "truncate_rate"])
def test_bodies_that_are_not_json_are_invalid_responses(sim: Simulator, fault: str) -> None:
    with client_for(sim) as client:
        client.login()
        sim.set_faults(Faults.from_dict({fault: 1.0}))
        with pytest.raises(TaranaInvalidResponseError):
            client.device_page(0)
        with pytest.raises(TaranaInvalidResponseError):
            client.fetch_devices("BN")


def test_huge_body_is_an_invalid_response(sim: Simulator) -> None:
    with client_for(sim, max_body_bytes=2000) as client:
        client.login()
        with pytest.raises(TaranaInvalidResponseError, match="exceeds"):
            client.hierarchy()


def test_device_detail_and_hierarchy(sim: Simulator) -> None:
    rn = sim.rn_records()[3]
    with client_for(sim) as client:
        detail = client.device(rn["serialNumber"])
        tree = client.hierarchy()
        regions = client.regions()
    assert isinstance(detail["carriers"], dict) and set(detail["carriers"]) == {"0", "1"}
    assert detail["masterSerial"] in set(serials(sim.bn_records()))
    markets = [m for r in tree["regions"] for m in r["markets"]]
    assert sum(len(m["sites"]) for m in markets) == 389
    assert {r["name"] for r in regions} == {"South Africa", "Training_UN"}


def test_outage_is_an_empty_complete_result() -> None:
    with Simulator(stations=100, faults=Faults(outage=True)) as sim, client_for(sim) as client:
        report = client.fetch_devices("BN")
    assert report.items == [] and report.complete and report.pages == 1
    assert report.total_count == 0 and not report.total_mismatch


def test_mutations_show_in_the_next_fetch(sim: Simulator) -> None:
    with client_for(sim) as client:
        changes = sim.mutate(add=7, remove=4, change=5, seed=3)
        report = client.fetch_devices("BN")
    got = {r["serialNumber"]: r for r in report.items}
    assert set(changes["added"]) <= set(got) and not set(changes["removed"]) & set(got)
    assert len(got) == 703 and not report.total_mismatch


def test_concurrency_speeds_up_fetching_under_latency() -> None:
    with Simulator(stations=400, faults=Faults(latency_ms=30)) as sim:
        timings = {}
        for concurrency in (1, 8):
            with client_for(sim, concurrency=concurrency) as client:
                client.login()
                started = time.perf_counter()
                report = client.fetch_devices("BN")
                timings[concurrency] = time.perf_counter() - started
                assert len(report.items) == 400
    assert timings[1] >= 3 * timings[8], timings


def test_every_failure_is_a_tarana_error(sim: Simulator) -> None:
    """A grab bag of bad situations: none may leak an httpx exception."""
    bad = TaranaClient("http://127.0.0.1:9", "u", Secret("p"), operator_id="1", retries=0)
    with bad, pytest.raises(TaranaError):
        bad.login()
    with client_for(sim, retries=0) as client, pytest.raises(TaranaError):
        client.call("GET", "/api/tcs/v1/user-auth/login")
