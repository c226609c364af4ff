"""The simulator over real HTTP: the portal's paths, headers, cookies, envelopes and quirks."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.clock import FakeClock
from core.tarana.faults import Faults
from core.tarana.simulator import Simulator

BROWSER = {
    "Accept": "application/json, text/plain, */*",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
    "X-Caller-Name": "operator-portal",
}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(stations=700, seed=7) as simulator:
        yield simulator


def browser(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={**BROWSER, "Referer": sim.base_url + "/"})


def logged_in(sim: Simulator) -> httpx.Client:
    client = browser(sim)
    answer = client.post("/api/tcs/v1/user-auth/login", auth=(sim.username, sim.password))
    assert answer.status_code == 200
    cookie = "; ".join(f"{k}={v}" for k, v in answer.cookies.items())
    client.cookies.clear()
    client.headers["Cookie"] = cookie
    return client


def devices(client: httpx.Client, sim: Simulator, **params: Any) -> dict[str, Any]:
    answer = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices", params=params)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_binds_only_to_loopback() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        Simulator(stations=10, host="0.0.0.0")
    with Simulator(stations=10) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")


def test_login_sets_cookies_and_documented_body(sim: Simulator) -> None:
    answer = browser(sim).post("/api/tcs/v1/user-auth/login", auth=(sim.username, sim.password))
    assert answer.status_code == 200
    assert set(answer.cookies) == {"idToken", "accessToken", "refreshToken", "userId"}
    body = answer.json()
    assert body["error"] is None
    assert set(body["data"]) == {"userId", "accessToken", "refreshToken", "session"}
    assert body["data"]["session"] is None
    assert body["data"]["accessToken"] == answer.cookies["accessToken"]
    assert sim.stats["logins"] == 1


def test_wrong_password_is_refused_in_the_error_envelope(sim: Simulator) -> None:
    answer = browser(sim).post("/api/tcs/v1/user-auth/login", auth=(sim.username, "nope"))
    assert answer.status_code == 401
    assert answer.json() == {
        "data": None,
        "error": {"code": 401, "message": "Incorrect username or password.",
                  "status": "Unauthorized"},
    }  # fmt: skip


def test_later_calls_need_the_cookie_not_basic_auth(sim: Simulator) -> None:
    client = browser(sim)
    answer = client.get(
        f"/api/nqs/v1/operators/{sim.operator_id}/devices", auth=(sim.username, sim.password)
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == 401
    assert devices(logged_in(sim), sim)["count"] == 10


@pytest.mark.parametrize("missing", ["Accept", "Referer", "User-Agent", "X-Caller-Name"])
def test_missing_browser_header_gets_the_fast_gateway_403(sim: Simulator, missing: str) -> None:
    headers = {**BROWSER, "Referer": sim.base_url + "/"}
    del headers[missing]
    for path in ("/api/tcs/v1/user-auth/login", f"/api/nqs/v1/operators/{sim.operator_id}/devices"):
        # httpx adds its own Accept and User-Agent unless told otherwise
        client = httpx.Client(base_url=sim.base_url)
        for name in ("Accept", "User-Agent"):
            client.headers.pop(name, None)
        answer = client.request("POST" if "login" in path else "GET", path, headers=headers,
                                auth=(sim.username, sim.password))  # fmt: skip
        assert answer.status_code == 403
        assert answer.headers["x-envoy-upstream-service-time"] == "1"
    assert sim.stats["gateway_refusals"] == 2
    assert sim.stats.get("logins", 0) == 0


def test_page_size_is_fixed_at_ten_whatever_limit_says(sim: Simulator) -> None:
    client = logged_in(sim)
    for limit in (1, 10, 100, 1000):
        page = devices(client, sim, offset=0, limit=limit, type="BN")
        assert page["count"] == 10 and len(page["items"]) == 10
        assert page["totalCount"] == 700 and page["offset"] == 0
    last = devices(client, sim, offset=695, type="BN")
    assert last["count"] == 5
    assert devices(client, sim, offset=700, type="BN")["items"] == []
    rn = devices(client, sim, offset=0, type="RN")
    assert rn["totalCount"] == 1400 and {i["type"] for i in rn["items"]} == {"RN"}
    mixed = devices(client, sim, offset=695)
    assert mixed["totalCount"] == 2100
    assert [i["type"] for i in mixed["items"]] == ["BN"] * 5 + ["RN"] * 5


def test_bad_offset_and_type_are_400(sim: Simulator) -> None:
    client = logged_in(sim)
    path = f"/api/nqs/v1/operators/{sim.operator_id}/devices"
    assert client.get(path, params={"offset": "x"}).status_code == 400
    assert client.get(path, params={"offset": 0, "type": "CPE"}).status_code == 400
    assert client.get("/api/nqs/v1/operators/999/devices").status_code == 404


def test_items_are_the_records_the_simulator_reports(sim: Simulator) -> None:
    client = logged_in(sim)
    served = [
        i for k in range(0, 700, 10) for i in devices(client, sim, offset=k, type="BN")["items"]
    ]
    assert served == sim.bn_records()
    assert len(sim.rn_records()) == 1400


def test_single_device_has_carriers_object_and_master_serial(sim: Simulator) -> None:
    client = logged_in(sim)
    bn_serials = {r["serialNumber"] for r in sim.bn_records()}
    rn = sim.rn_records()[0]
    answer = client.get(f"/api/nqs/v1/devices/{rn['serialNumber']}")
    data = answer.json()["data"]
    assert 30 <= len(data) <= 60
    assert set(data["carriers"]) == {"0", "1"}
    assert {"txPower", "frequency", "channelWidth", "status", "statusText"} <= set(
        data["carriers"]["0"]
    )
    assert "rxPower" not in data
    assert data["masterSerial"] in bn_serials
    for key in ("type", "hostName", "connected", "linkState", "losRange", "installParams",
                "sectorId", "softwareVersion"):  # fmt: skip
        assert key in data
    bn = client.get(f"/api/nqs/v1/devices/{next(iter(sorted(bn_serials)))}").json()["data"]
    assert bn["type"] == "BN" and "masterSerial" not in bn
    missing = client.get("/api/nqs/v1/devices/S134F0000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404


def test_hierarchy_is_nested_and_regions_list(sim: Simulator) -> None:
    client = logged_in(sim)
    tree = client.get(
        f"/api/nqs/v1/operators/{sim.operator_id}/network-hierarchy",
        params={"hierarchyLevel": "SITE"},
    ).json()["data"]
    assert {"id", "name", "regions"} <= set(tree)
    south_africa = next(r for r in tree["regions"] if r["name"] == "South Africa")
    jhb = next(m for m in south_africa["markets"] if m["name"] == "JHB Gauteng")
    assert jhb["sites"] and set(jhb["sites"][0]) == {"id", "name"}
    regions = client.get(
        f"/api/tni/v2/operators/{sim.operator_id}/regions", params={"offset": 0, "count": 1000}
    ).json()["data"]["items"]
    assert {r["name"] for r in regions} == {"South Africa", "Training_UN"}
    assert all("regulatoryCountry" in r for r in regions)


def test_broken_and_unknown_endpoints(sim: Simulator) -> None:
    client = logged_in(sim)
    search = client.post("/api/tmq/v1/radios/search", json={"query": {}})
    assert search.status_code == 500 and search.json()["error"]["code"] == 500
    count = client.post("/api/tmq/v5/radios/count", json={})
    assert count.status_code == 400 and count.json()["error"]["code"] == 400
    unknown = client.get("/api/nqs/v1/nothing/here")
    assert unknown.status_code == 404
    assert unknown.json() == {
        "data": None,
        "error": {"code": 404, "message": "No route for GET /api/nqs/v1/nothing/here",
                  "status": "Not Found"},
    }  # fmt: skip
    assert client.get("/api/tcs/v1/user-auth/login").status_code == 405


def test_keep_alive_serves_many_requests_on_one_connection(sim: Simulator) -> None:
    cookie = logged_in(sim).headers["Cookie"]
    conn = http.client.HTTPConnection(sim.base_url.removeprefix("http://"))
    headers = {**BROWSER, "Referer": sim.base_url + "/", "Cookie": cookie}
    for offset in range(0, 50, 10):
        conn.request("GET", f"/api/nqs/v1/operators/{sim.operator_id}/devices?offset={offset}",
                     headers=headers)  # fmt: skip
        answer = conn.getresponse()
        assert answer.status == 200 and answer.version == 11
        answer.read()
        assert conn.sock is not None  # still the same, still open
    conn.close()


def test_session_expires_after_its_ttl() -> None:
    clock = FakeClock()
    with Simulator(stations=20, clock=clock) as sim:
        client = logged_in(sim)
        assert devices(client, sim)["count"] == 10
        clock.advance(3599)
        assert devices(client, sim)["count"] == 10
        clock.advance(2)
        answer = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices")
        assert answer.status_code == 401
        assert answer.json()["error"]["message"] == "The incoming token has expired"
        sim.set_faults(Faults(session_ttl_s=60))
        client = logged_in(sim)
        clock.advance(61)
        assert client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices").status_code == 401


def test_faults_over_http(sim: Simulator) -> None:
    control = httpx.Client(base_url=sim.base_url)
    answer = control.post("/__sim/faults", json={"error_rate": 1.0})
    assert answer.status_code == 200 and sim.faults.error_rate == 1.0
    client = logged_in(sim)
    status = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices").status_code
    assert status in (500, 502, 503)
    bad = control.post("/__sim/faults", json={"eror_rate": 1.0})
    assert bad.status_code == 400 and "eror_rate" in bad.json()["error"]["message"]
    assert control.post("/__sim/faults", json="latency_ms=5").json()["data"]["latency_ms"] == 5
    assert sim.faults == Faults(latency_ms=5)
    assert control.get("/__sim/stats").json()["data"]["server_errors"] >= 1


def test_rate_limit_bursts_carry_retry_after(sim: Simulator) -> None:
    client = logged_in(sim)
    sim.set_faults(Faults(rate_limit_every=3, rate_limit_burst=2, retry_after_s=2.5))
    codes = []
    for _ in range(10):
        answer = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices")
        codes.append(answer.status_code)
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] == "2.5"
    assert codes == [200, 200, 200, 429, 429, 200, 200, 200, 429, 429]
    assert sim.stats["rate_limited"] == 4


def test_outage_serves_empty_pages(sim: Simulator) -> None:
    sim.set_faults(Faults(outage=True))
    page = devices(logged_in(sim), sim, offset=0, type="BN")
    assert page["items"] == [] and page["totalCount"] == 0


def test_garbage_and_truncated_bodies(sim: Simulator) -> None:
    client = logged_in(sim)
    sim.set_faults(Faults(garbage_rate=1.0))
    answer = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices")
    assert answer.status_code == 200 and answer.text.startswith("<html>")
    sim.set_faults(Faults(truncate_rate=1.0))
    answer = client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices")
    with pytest.raises(ValueError):
        answer.json()


def test_malformed_records_are_served_and_listed() -> None:
    with Simulator(stations=700, faults=Faults(malformed=0.08)) as sim:
        broken = sim.malformed_serials()
        assert set(broken.values()) == {
            "missing_coordinates", "zero_coordinates", "out_of_range_coordinates",
            "non_numeric", "duplicate_serial", "html_in_name", "formula_in_name",
            "missing_serial",
        }  # fmt: skip
        records = sim.bn_records()
        assert len(records) == 700 + sum(r == "duplicate_serial" for r in broken.values())
        names = [r.get("ancestry", {}).get("site", {}).get("name", "") for r in records]
        names += [r.get("hostName", "") for r in records]
        assert "<script>alert(1)</script>" in names
        assert any(n.startswith("=cmd|") for n in names)
        assert sum("serialNumber" not in r for r in records) == sum(
            r == "missing_serial" for r in broken.values()
        )
        values = [v for r in records for v in (r.get("installParams") or {}).values()]
        assert "n/a" in values
        sim.set_faults(Faults())
        assert len(sim.bn_records()) == 700 and sim.malformed_serials() == {}


def test_mutate_adds_removes_and_changes(sim: Simulator) -> None:
    before = {r["serialNumber"]: r for r in sim.bn_records()}
    result = sim.mutate(add=5, remove=3, change=4, seed=1)
    after = {r["serialNumber"]: r for r in sim.bn_records()}
    assert len(result["added"]) == 5 and set(result["added"]) <= set(after)
    assert set(result["removed"]) <= set(before) and not set(result["removed"]) & set(after)
    for serial in result["changed"]:
        if serial in after:
            assert after[serial]["connected"] is not before[serial]["connected"]
    assert len(after) == 700 + 5 - 3
    over_http = httpx.post(sim.base_url + "/__sim/mutate", json={"add": 2}).json()["data"]
    assert len(over_http["added"]) == 2 and len(sim.bn_records()) == 704
    page = devices(logged_in(sim), sim, offset=0, type="BN")
    assert page["totalCount"] == 704


def test_stop_does_not_wait_for_hanging_requests() -> None:
    sim = Simulator(stations=20, faults=Faults(timeout_rate=1.0, hang_s=30))
    sim.start()
    client = logged_in(sim)
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"/api/nqs/v1/operators/{sim.operator_id}/devices", timeout=0.2)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 5
    assert sim.stats["hangs"] == 1
