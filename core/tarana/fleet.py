"""Seeded fake fleet for the simulator: sites, BNs and RNs as the portal would list them.

``Fleet`` builds, from a seed, one operator's network in South Africa (seven
markets weighted like the real one, plus a small test region), about 1.8 base
nodes (BNs) per site with one per sector, and remote nodes (RNs) hanging off
them by ``masterSerial``. Each device is kept only as the exact JSON bytes of
its device-list item, built from pre-encoded fragments (the ancestry members a
site's devices share are encoded once per site and shared), because that is
what the server sends most and it keeps 100,000 BNs plus their RNs small and
quick to make. Single-device detail is derived from those bytes plus a per-serial
seed, so it is stable without being stored. The same seed always gives the
same fleet; mutations (add, remove, change) take their own random source.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Device", "Fleet", "Market", "Site"]

BASE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z: fixed so the data does not depend on today
TIMEZONE = "Africa/Johannesburg"
OPERATOR_NAME = "Stationsync Demo Wireless"

_GENERIC_PLACES = (
    "Main Road", "Church Street", "Central", "Hillside", "Riverside", "Station Road",
    "Voortrekker", "Nelson Mandela", "Industria", "Parkview",
)  # fmt: skip
_FEATURES = (
    "Shopping Centre", "Office Tower", "Water Tower", "Mall", "Hospital", "Primary School",
    "High School", "Taxi Rank", "Business Park", "Industrial Park", "Clinic", "Police Station",
    "Stadium", "Library", "Community Hall", "Fire Station", "Hotel", "Retirement Village",
    "Church", "Filling Station", "Reservoir", "Plaza", "Junction", "Estate", "Depot",
    "Exchange", "Mast", "Rooftop", "Square", "Lodge", "Warehouse", "Silo",
)  # fmt: skip

_QUALIFIERS = ("North", "South", "East", "West", "Central", "Ext 2", "Ext 5", "Phase 2", "Park")


@dataclass(frozen=True)
class _MarketSpec:
    name: str
    weight: int
    lat: tuple[float, float]  # a box on land around the market's city
    lng: tuple[float, float]
    places: tuple[str, ...]


_REGION = "South Africa"
_MARKETS = (
    _MarketSpec("JHB Gauteng", 112, (-26.45, -25.95), (27.75, 28.35), (
        "Alex", "Sandton", "Randburg", "Midrand", "Soweto", "Fourways", "Rosebank", "Roodepoort",
        "Kempton Park", "Benoni", "Boksburg", "Germiston", "Edenvale", "Bryanston", "Melville",
        "Lenasia", "Diepsloot", "Tembisa", "Bedfordview", "Northcliff")),
    _MarketSpec("TSH Gauteng", 63, (-25.95, -25.55), (27.95, 28.55), (
        "Centurion", "Hatfield", "Menlyn", "Mamelodi", "Soshanguve", "Pretoria North",
        "Silverton", "Brooklyn", "Garsfontein", "Atteridgeville", "Montana", "Irene")),
    _MarketSpec("KZN", 61, (-30.0, -29.5), (30.35, 30.98), (
        "Umhlanga", "Pinetown", "Westville", "Chatsworth", "Phoenix", "Durban North",
        "Hillcrest", "Amanzimtoti", "Umlazi", "Kloof", "Queensburgh", "Berea")),
    _MarketSpec("CAPE", 56, (-34.02, -33.65), (18.5, 18.95), (
        "Bellville", "Claremont", "Khayelitsha", "Mitchells Plain", "Stellenbosch",
        "Somerset West", "Durbanville", "Parow", "Kuils River", "Goodwood", "Brackenfell")),
    _MarketSpec("CENTRAL", 34, (-29.3, -28.9), (25.95, 26.45), (
        "Bloemfontein", "Botshabelo", "Thaba Nchu", "Heidedal", "Langenhovenpark",
        "Bayswater", "Mangaung", "Fichardtpark")),
    _MarketSpec("ECAPE", 32, (-33.98, -33.7), (25.3, 25.62), (
        "Gqeberha", "Kariega", "Walmer", "Summerstrand", "Motherwell", "Kwazakhele",
        "Newton Park", "Despatch")),
    _MarketSpec("NORTHERN", 32, (-24.1, -23.7), (29.25, 29.7), (
        "Polokwane", "Seshego", "Bendor", "Mankweng", "Westenburg", "Ladanna", "Flora Park")),
)  # fmt: skip
_TEST_REGION = _MarketSpec("Training_UN", 0, (-26.12, -26.08), (28.04, 28.08), ("Lab",))
_SHARED_NAME = "Main Road Water Tower"  # present in several markets on purpose


@dataclass(slots=True)
class Market:
    id: int
    name: str
    region_id: int
    region: str
    spec: _MarketSpec
    sites: list[Site] = field(default_factory=list)
    names: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Site:
    id: int
    name: str
    market: Market
    lat: float
    lng: float
    cell: int
    # the end of every item on this site: the shared ancestry members, encoded once
    tail: bytes


@dataclass(slots=True)
class Device:
    """One device; its list item is ``own + tail`` with ``tail`` shared by its site."""

    serial: str
    kind: str  # "BN" or "RN"
    own: bytes
    tail: bytes = b""
    master: str | None = None  # an RN's BN

    @property
    def item(self) -> bytes:
        return self.own + self.tail

    def replace_item(self, item: bytes) -> None:
        self.own, self.tail = item, b""


def _q(text: str) -> str:
    return json.dumps(text)


class Fleet:
    """One operator's devices, generated from ``seed``; see the module docstring."""

    def __init__(self, stations: int = 700, seed: int = 7, rns_per_bn: float = 2.0) -> None:
        if stations < 0 or rns_per_bn < 0:
            raise ValueError("stations and rns_per_bn must be 0 or more")
        self.seed = seed
        self.operator_id = str(4100 + seed % 900)
        self.operator_name = OPERATOR_NAME
        self._op_frag = (
            f'"operator":{{"id":{int(self.operator_id)},"name":{_q(OPERATOR_NAME)},'
            f'"timeZone":"{TIMEZONE}"}}'
        )
        self.markets: list[Market] = []
        self.bns: list[Device] = []
        self.rns: list[Device] = []
        self._next = {"site": 10001, "cell": 100, "sector": 1000001, "bn": 0, "rn": 0}
        rng = random.Random(f"fleet:{seed}")
        self._build_markets()
        sites = self._make_sites(rng, stations)
        self._make_devices(rng, sites, stations, rns_per_bn)

    # ---- generation -------------------------------------------------------------

    def _build_markets(self) -> None:
        for i, spec in enumerate((*_MARKETS, _TEST_REGION)):
            test = spec is _TEST_REGION
            self.markets.append(
                Market(1001 + i, "Training" if test else spec.name, 102 if test else 101,
                       spec.name if test else _REGION, spec)
            )  # fmt: skip

    def _make_sites(self, rng: random.Random, stations: int) -> list[Site]:
        n_sites = max(1, round(stations / 1.8)) if stations else 0
        n_test = max(1, round(n_sites * 0.005)) if n_sites >= 20 else 0
        share = _allocate(n_sites - n_test, [m.weight for m in _MARKETS])
        sites: list[Site] = []
        for market, count in zip(self.markets, [*share, n_test], strict=True):
            for k in range(count):
                name = _SHARED_NAME if k == 0 and market.id <= 1003 else None
                sites.append(self._new_site(rng, market, name))
        return sites

    def _new_site(self, rng: random.Random, market: Market, name: str | None = None) -> Site:
        spec = market.spec
        if name is None or name in market.names:
            name = self._site_name(rng, market)
        market.names.add(name)
        lat = spec.lat[0] + (rng.random() + rng.random()) / 2 * (spec.lat[1] - spec.lat[0])
        lng = spec.lng[0] + (rng.random() + rng.random()) / 2 * (spec.lng[1] - spec.lng[0])
        site_id = self._take("site")
        tail = (
            f',"region":{{"id":{market.region_id},"name":{_q(market.region)}}},'
            f'"market":{{"id":{market.id},"name":{_q(market.name)}}},'
            f'"site":{{"id":{site_id},"name":{_q(name)},"latitude":0,"longitude":0}},'
            f"{self._op_frag}}}}}"
        )
        site = Site(site_id, name, market, lat, lng, self._take("cell"), tail.encode())
        market.sites.append(site)
        return site

    def _site_name(self, rng: random.Random, market: Market) -> str:
        places = market.spec.places
        for _ in range(6):
            place = rng.choice(places) if rng.random() < 0.8 else rng.choice(_GENERIC_PLACES)
            if rng.random() < 0.25:  # big markets need more names than place x feature gives
                place = f"{place} {rng.choice(_QUALIFIERS)}"
            name = f"{place} {rng.choice(_FEATURES)}"
            if market.spec is _TEST_REGION:
                name = f"Training Lab {len(market.sites) + 1}"
            elif rng.random() < 0.12:
                name += " pCell"
            if name not in market.names:
                return name
        n = 2
        while f"{name} {n}" in market.names:
            n += 1
        return f"{name} {n}"

    def _take(self, counter: str) -> int:
        value = self._next[counter]
        self._next[counter] = value + 1
        return value

    def _make_devices(
        self, rng: random.Random, sites: list[Site], stations: int, rns_per_bn: float
    ) -> None:
        counts = [1] * len(sites)
        extra = min(stations - len(sites), 2 * len(sites))
        for slot in rng.sample(range(2 * len(sites)), max(0, extra)):
            counts[slot % len(sites)] += 1
        # kept only while RNs are made: where each BN is and what its ancestry says
        where: list[tuple[float, float, int, str, Site]] = []
        for site, count in zip(sites, counts, strict=True):
            base = rng.randrange(0, 360, 15)
            for s in range(count):
                azimuth = (base + s * 360 // count) % 360
                device, anc, lat, lng = self._make_bn(rng, site, s + 1, azimuth)
                self.bns.append(device)
                where.append((lat, lng, azimuth, anc, site))
        n_rns = round(len(self.bns) * rns_per_bn) if self.bns else 0
        for _ in range(n_rns):
            i = int(rng.random() * len(self.bns))
            self.rns.append(self._make_rn(rng, self.bns[i].serial, *where[i]))

    def _make_bn(
        self, rng: random.Random, site: Site, sector_no: int, azimuth: int
    ) -> tuple[Device, str, float, float]:
        n = self._take("bn")
        serial = f"S134F{2220000000 + n * 37 + int(rng.random() * 37)}"
        cell = f"X{site.cell:04d}"
        host = f"{cell}-BN-{azimuth}"
        sector_id = self._take("sector")
        anc = (
            f'"cell":{{"id":{500000 + site.cell},"name":"{site.cell}"}},'
            f'"sector":{{"id":{sector_id},"name":"{sector_no}"}},'
            f'"cellDetails":{{"id":{500000 + site.cell},"name":"{cell}"}},'
            f'"sectorDetails":{{"id":{sector_id},"name":"{host}","azimuth":{azimuth}}}'
        )
        lat = site.lat + (rng.random() - 0.5) * 0.0006
        lng = site.lng + (rng.random() - 0.5) * 0.0006
        r = rng.random()
        if r < 0.015:
            params = ""
        elif r < 0.03:
            params = ',"installParams":null'
        else:
            height = "heightAgl" if rng.random() < 0.9 else "height"
            params = (
                f',"installParams":{{"latitude":{lat:.6f},"longitude":{lng:.6f},'
                f'"{height}":{12 + rng.random() * 36:.1f},"antennaAzimuth":{azimuth}}}'
            )
        connected = rng.random() < 0.98
        seen = BASE_EPOCH - int(rng.random() * (86400 if connected else 30 * 86400))
        own = (
            f'{{"serialNumber":"{serial}","hostName":"{host}","type":"BN",'
            f'"connected":{"true" if connected else "false"},"band":"5ghz",'
            f'"lastUpdateTimeSeconds":{seen}{params}'
        )
        if rng.random() < 0.01:  # the portal leaves ancestry off a few items
            return Device(serial, "BN", f"{own}}}".encode(), b""), anc, lat, lng
        return Device(serial, "BN", f"{own},{_ANC}{{{anc}".encode(), site.tail), anc, lat, lng

    def _make_rn(
        self,
        rng: random.Random,
        master: str,
        lat: float,
        lng: float,
        azimuth: int,
        anc: str,
        site: Site,
    ) -> Device:
        n = self._take("rn")
        serial = f"S150F{2310000000 + n * 13 + int(rng.random() * 13)}"
        # RNs sit in front of their BN's antenna, a few hundred metres to 8 km out
        bearing = math.radians(azimuth + (rng.random() - 0.5) * 80)
        km = 0.3 + rng.random() * 7.7
        rlat = lat + km * math.cos(bearing) / 111.0
        rlng = lng + km * math.sin(bearing) / (111.0 * math.cos(math.radians(lat)))
        back = (round(math.degrees(bearing)) + 180) % 360
        connected = rng.random() < 0.9
        seen = BASE_EPOCH - int(rng.random() * (86400 if connected else 30 * 86400))
        own = (
            f'{{"serialNumber":"{serial}","hostName":"RN-{serial[5:]}","type":"RN",'
            f'"connected":{"true" if connected else "false"},"band":"5ghz",'
            f'"lastUpdateTimeSeconds":{seen},'
            f'"installParams":{{"latitude":{rlat:.6f},"longitude":{rlng:.6f},'
            f'"heightAgl":{4 + rng.random() * 8:.1f},"antennaAzimuth":{back}}}'
        )
        if rng.random() < 0.01:
            return Device(serial, "RN", f"{own}}}".encode(), b"", master)
        return Device(serial, "RN", f"{own},{_ANC}{{{anc}".encode(), site.tail, master)

    # ---- mutations --------------------------------------------------------------

    def add_bns(self, count: int, rng: random.Random) -> list[str]:
        """Add ``count`` BNs, each on a new site, at random places in the list."""
        markets = self.markets[: len(_MARKETS)]
        weights = [m.spec.weight for m in markets]
        added: list[str] = []
        for _ in range(count):
            site = self._new_site(rng, rng.choices(markets, weights)[0])
            device, *_ = self._make_bn(rng, site, 1, rng.randrange(0, 360, 15))
            self.bns.insert(rng.randint(0, len(self.bns)), device)
            added.append(device.serial)
        return added

    def remove_bns(self, count: int, rng: random.Random) -> list[str]:
        """Remove ``count`` random BNs (their RNs stay, as orphans do on the portal)."""
        picked = set(rng.sample(range(len(self.bns)), min(count, len(self.bns))))
        removed = [self.bns[i].serial for i in sorted(picked)]
        self.bns = [d for i, d in enumerate(self.bns) if i not in picked]
        return removed

    def change_bns(self, count: int, rng: random.Random) -> list[str]:
        """Flip ``connected`` and move ``lastUpdateTimeSeconds`` on of ``count`` BNs."""
        changed: list[str] = []
        for i in sorted(rng.sample(range(len(self.bns)), min(count, len(self.bns)))):
            device = self.bns[i]
            data = json.loads(device.item)
            data["connected"] = data.get("connected") is not True
            data["lastUpdateTimeSeconds"] = int(data.get("lastUpdateTimeSeconds", 0)) + 3600
            device.replace_item(encode(data))
            changed.append(device.serial)
        return changed

    # ---- other views ------------------------------------------------------------

    def detail(self, device: Device) -> dict[str, Any]:
        """The single-device payload: the list item plus stable per-serial extras."""
        data: dict[str, Any] = json.loads(device.item)
        rng = random.Random(f"detail:{self.seed}:{device.serial}")
        anc = data.get("ancestry") or {}
        up = bool(data.get("connected"))
        carriers = {
            str(k): {
                "txPower": round(18 + rng.random() * 12, 1),
                "frequency": 5_150_000 + 20_000 * rng.randrange(0, 30),
                "channelWidth": rng.choice((20, 40, 80)),
                "status": 1 if up else 0,
                "statusText": "ACTIVE" if up else "INACTIVE",
            }
            for k in range(2)
        }
        data.update(
            linkState="UP" if up else "DOWN",
            losRange=round(rng.random() * 8000, 1),
            sectorId=(anc.get("sector") or {}).get("id"),
            cellId=(anc.get("cell") or {}).get("id"),
            siteId=(anc.get("site") or {}).get("id"),
            marketId=(anc.get("market") or {}).get("id"),
            regionId=(anc.get("region") or {}).get("id"),
            operatorId=int(self.operator_id),
            softwareVersion=f"SYS.A3.R10.{rng.randrange(0, 9)}.{rng.randrange(1000, 9999)}",
            hardwareVersion=f"HW-{rng.choice('ABC')}{rng.randrange(1, 4)}",
            model="G1-BN-5" if device.kind == "BN" else "G1-RN-5",
            macAddress=":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
            ipv4Address=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            uptimeSeconds=rng.randrange(60, 90 * 86400) if up else 0,
            temperatureC=round(25 + rng.random() * 30, 1),
            gpsLocked=up,
            carriers=carriers,
            numCarriers=len(carriers),
            rebootCount=rng.randrange(0, 40),
            lastRebootReason=rng.choice(("POWER_CYCLE", "UPGRADE", "WATCHDOG", "USER")),
            alarms=[],
            tags=[],
            timeZone=TIMEZONE,
            createdTimeSeconds=BASE_EPOCH - rng.randrange(30, 900) * 86400,
        )
        if device.kind == "RN":
            data.update(
                masterSerial=device.master,
                pathLoss=round(95 + rng.random() * 40, 1),
                snr=round(5 + rng.random() * 30, 1),
            )
        return data

    def hierarchy(self, level: str = "SITE") -> dict[str, Any]:
        """The nested operator -> regions -> markets -> sites tree."""
        regions: dict[int, dict[str, Any]] = {}
        for m in self.markets:
            region = regions.setdefault(
                m.region_id, {"id": m.region_id, "name": m.region, "markets": []}
            )
            market: dict[str, Any] = {"id": m.id, "name": m.name}
            if level == "SITE":
                market["sites"] = [{"id": s.id, "name": s.name} for s in m.sites]
            region["markets"].append(market)
        if level == "REGION":
            for region in regions.values():
                del region["markets"]
        return {"id": int(self.operator_id), "name": self.operator_name,
                "regions": list(regions.values())}  # fmt: skip

    def regions(self) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for m in self.markets:
            seen.setdefault(m.region_id, {
                "id": m.region_id, "name": m.region, "regulatoryCountry": "ZA",
                "timeZone": TIMEZONE, "operatorId": int(self.operator_id),
            })  # fmt: skip
        return list(seen.values())


_ANC = '"ancestry":'


def encode(data: Any) -> bytes:
    """Compact JSON, as the portal sends it."""
    return json.dumps(data, separators=(",", ":")).encode()


def _allocate(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` by ``weights`` with largest remainders, so shares sum exactly."""
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    shares = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares
