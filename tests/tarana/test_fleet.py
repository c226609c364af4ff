"""The generated fleet and the fault knobs: shapes, realism, determinism, scale."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.tarana.faults import Faults
from core.tarana.fleet import Fleet

SA_LAT, SA_LNG = (-35.0, -22.0), (16.4, 33.0)


def items(fleet: Fleet, kind: str = "BN") -> list[dict[str, Any]]:
    return [json.loads(d.item) for d in (fleet.bns if kind == "BN" else fleet.rns)]


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    a, b, c = Fleet(300, 7), Fleet(300, 7), Fleet(300, 8)
    assert [d.item for d in a.bns + a.rns] == [d.item for d in b.bns + b.rns]
    assert [d.serial for d in a.bns] != [d.serial for d in c.bns]


def test_sizes_markets_and_sites() -> None:
    fleet = Fleet(700, 7)
    assert len(fleet.bns) == 700 and len(fleet.rns) == 1400
    sites = {m.name: len(m.sites) for m in fleet.markets}
    assert list(sites)[:7] == ["JHB Gauteng", "TSH Gauteng", "KZN", "CAPE", "CENTRAL", "ECAPE",
                               "NORTHERN"]  # fmt: skip
    assert sites["JHB Gauteng"] == max(sites.values())
    assert 380 <= sum(sites.values()) <= 400  # ~1.8 BNs per site
    regions = {m.region for m in fleet.markets}
    assert regions == {"South Africa", "Training_UN"}
    for market in fleet.markets:
        names = [s.name for s in market.sites]
        assert len(names) == len(set(names)), f"site names repeat inside {market.name}"
    per_name = Counter(s.name for m in fleet.markets for s in m.sites)
    assert per_name.most_common(1)[0][1] > 1, "no site name recurs across markets"


def test_bn_items_look_like_the_portal() -> None:
    bns = items(Fleet(700, 7))
    assert all(re.fullmatch(r"S134F\d{10}", b["serialNumber"]) for b in bns)
    assert all(re.fullmatch(r"X\d{4,}-BN-\d{1,3}", b["hostName"]) for b in bns)
    assert len({b["serialNumber"] for b in bns}) == 700
    connected = sum(b["connected"] is True for b in bns) / len(bns)
    assert 0.95 <= connected <= 1.0
    no_params = [b for b in bns if not b.get("installParams")]
    assert 0.01 <= len(no_params) / len(bns) <= 0.06
    assert any("installParams" not in b for b in no_params)
    assert any("installParams" in b and b["installParams"] is None for b in no_params)
    with_anc = [b for b in bns if "ancestry" in b]
    assert 0 < len(bns) - len(with_anc) < 30, "ancestry should be absent on a few items"
    for b in with_anc:
        anc = b["ancestry"]
        assert set(anc) == {"region", "market", "site", "cell", "sector", "cellDetails",
                            "sectorDetails", "operator"}  # fmt: skip
        assert anc["site"]["latitude"] == 0 and anc["site"]["longitude"] == 0
        assert anc["sectorDetails"]["name"] == b["hostName"]
        assert b["hostName"].startswith(anc["cellDetails"]["name"] + "-BN-")
        assert anc["cell"]["name"].isdigit() and anc["sector"]["name"].isdigit()
        assert anc["operator"]["timeZone"] == "Africa/Johannesburg"
    for b in bns:
        params = b.get("installParams")
        if params:
            assert SA_LAT[0] < params["latitude"] < SA_LAT[1]
            assert SA_LNG[0] < params["longitude"] < SA_LNG[1]
            assert int(b["hostName"].rsplit("-", 1)[1]) == params["antennaAzimuth"]


def test_one_bn_per_sector_and_rns_hang_off_bns() -> None:
    fleet = Fleet(700, 7)
    bns = items(fleet)
    sectors = Counter(b["ancestry"]["sector"]["id"] for b in bns if "ancestry" in b)
    assert max(sectors.values()) == 1
    serials = {d.serial for d in fleet.bns}
    assert all(d.master in serials for d in fleet.rns)
    rns = items(fleet, "RN")
    assert all(re.fullmatch(r"S150F\d{10}", r["serialNumber"]) for r in rns)
    assert 0.85 <= sum(r["connected"] is True for r in rns) / len(rns) <= 0.95
    assert all(SA_LAT[0] < r["installParams"]["latitude"] < SA_LAT[1] for r in rns)


def test_rns_per_bn_knob() -> None:
    assert len(Fleet(100, 1, rns_per_bn=0.5).rns) == 50
    assert Fleet(100, 1, rns_per_bn=0).rns == []


@pytest.mark.slow
def test_100k_bns_generate_quickly() -> None:
    started = time.perf_counter()
    fleet = Fleet(100_000, 7)
    elapsed = time.perf_counter() - started
    assert len(fleet.bns) == 100_000 and len(fleet.rns) == 200_000
    assert elapsed < 10, f"generating 100,000 BNs took {elapsed:.1f} s"


def test_faults_parse_text() -> None:
    faults = Faults.parse("error_rate=0.3, latency_ms=50,rate_limit_every=20,retry_after_s=1")
    assert faults == Faults(error_rate=0.3, latency_ms=50, rate_limit_every=20, retry_after_s=1)
    assert Faults.parse("") == Faults()
    assert Faults.parse("outage=yes").outage is True
    assert Faults.parse(faults.to_text()) == faults


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("error_rat=0.3", "error_rat"),
        ("error_rate=1.5", "error_rate"),
        ("latency_ms=fast", "latency_ms"),
        ("rate_limit_every=2.5", "rate_limit_every"),
        ("outage=maybe", "outage"),
        ("error_rate", "error_rate"),
        ("churn=0.1,churn=0.2", "churn"),
    ],
)
def test_faults_parse_names_the_bad_knob(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Faults.parse(text)


def test_faults_from_json_values() -> None:
    assert Faults.from_dict({"error_rate": 0.5, "outage": True}).outage is True
    with pytest.raises(ValueError, match="error_rate"):
        Faults.from_dict({"error_rate": True})
    with pytest.raises(ValueError, match="nope"):
        Faults.from_dict({"nope": 1})


@given(
    error_rate=st.floats(0, 1),
    latency_ms=st.floats(0, 10_000),
    every=st.integers(0, 1000),
    outage=st.booleans(),
)
def test_faults_text_round_trip(
    error_rate: float, latency_ms: float, every: int, outage: bool
) -> None:
    faults = Faults(
        error_rate=error_rate, latency_ms=latency_ms, rate_limit_every=every, outage=outage
    )
    assert Faults.parse(faults.to_text()) == faults
