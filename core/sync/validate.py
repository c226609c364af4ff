"""Turning the portal's device-list items into station rows, or into reasons to skip them.

``check_bn`` maps one BN item to a compact row (a list in ``BN_FIELDS`` order,
JSON-safe so a fetch step can checkpoint it) or to the reason it cannot be
trusted: no serial, missing, zero, out-of-range, infinite or non-numeric
coordinates, non-numeric numbers, or text a database cannot hold. Coordinates
come only from ``installParams``: ``ancestry.site`` carries 0/0 and is never
used, and missing coordinates are never defaulted. Names stay literal text.
``rn_link`` says which BN an RN hangs off: its ``masterSerial`` when the item
has one, else its sector, which identifies one BN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# The compact row a fetch step stores for a valid BN.
BN_FIELDS: tuple[str, ...] = (
    "serial_number",
    "hostname",
    "site_name",
    "market",
    "region",
    "lat",
    "lng",
    "height_m",
    "azimuth_deg",
    "band",
    "connected",
    "region_id",
    "market_id",
    "site_id",
    "cell_id",
    "sector_id",
    "cell_name",
    "sector_name",
)
SERIAL, SECTOR_ID, CONNECTED = 0, BN_FIELDS.index("sector_id"), BN_FIELDS.index("connected")
MAX_KEY_LEN = 64  # serials and ids are VARCHAR(64): longer ones would fail the write
MAX_TEXT_LEN = 1000  # no real name is longer; a megabyte of one is an attack or a bug

_DECIMAL = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


class Invalid(ValueError):
    """A record that cannot be stored; the message is the reason shown to operators."""


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def number(value: Any, what: str, *, required: bool) -> float | None:
    """A finite float, None when absent and allowed; Invalid otherwise."""
    if value is None:
        if required:
            raise Invalid(f"missing {what}")
        return None
    if isinstance(value, bool):
        raise Invalid(f"{what} {value!r} is not a number")
    if not (
        isinstance(value, int | float) or (isinstance(value, str) and _DECIMAL.fullmatch(value))
    ):
        raise Invalid(f"{what} {_show(value)} is not a number")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond any float: JSON allows it
        raise Invalid(f"{what} {_show(value)} is not a number a float can hold") from None
    if not math.isfinite(result):
        raise Invalid(f"{what} {_show(value)} is not a finite number")
    return result


def text(value: Any, what: str, limit: int = MAX_TEXT_LEN) -> str | None:
    """Names and labels as literal text (numbers become their digits), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        result = value
    elif isinstance(value, bool):
        result = "true" if value else "false"
    elif isinstance(value, int | float):
        try:
            result = str(value)
        except ValueError:  # more digits than Python will print
            raise Invalid(f"{what} is a number too long to be a name") from None
    else:
        raise Invalid(f"{what} is a {type(value).__name__}, not text")
    if len(result) > limit:
        raise Invalid(f"{what} is longer than {limit} characters")
    if "\x00" in result:
        raise Invalid(f"{what} contains a NUL character, which the database cannot store")
    try:
        result.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{what} is not valid Unicode text") from None
    return result


def key(value: Any, what: str) -> str | None:
    """An id as text, at most ``MAX_KEY_LEN`` characters."""
    return text(value, what, MAX_KEY_LEN)


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def clean_serial(value: Any) -> str | None:
    """A serial as it may name a skipped record: stripped, printable, storable, or None."""
    if not isinstance(value, str):
        return None
    serial = value.strip()
    if not serial or len(serial) > MAX_KEY_LEN or not serial.isprintable():
        return None
    try:
        serial.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return serial


def serial_of(item: Any) -> str | None:
    """The item's serial if it is usable to report it by (see ``clean_serial``)."""
    return clean_serial(item.get("serialNumber")) if isinstance(item, Mapping) else None


def check_bn(item: Any) -> list[Any]:
    """The compact row of a valid BN item; raises Invalid with the reason otherwise."""
    if not isinstance(item, Mapping):
        raise Invalid("the list item is not an object")
    raw_serial = item.get("serialNumber")
    if raw_serial is None or (isinstance(raw_serial, str) and not raw_serial.strip()):
        host = item.get("hostName")
        where = f" (hostName {_show(host)})" if isinstance(host, str) and host else ""
        raise Invalid(f"no serial number{where}")
    if not isinstance(raw_serial, str):
        raise Invalid(f"serial number {_show(raw_serial)} is not text")
    serial = key(raw_serial.strip(), "serial number")
    kind = item.get("type")
    if kind is not None and kind != "BN":
        raise Invalid(f"listed as a BN but its type is {_show(kind)}")
    params = item.get("installParams")
    if params is None:
        raise Invalid("missing coordinates (no installParams)")
    if not isinstance(params, Mapping):
        raise Invalid(f"no usable coordinates: installParams is a {type(params).__name__}")
    lat = number(params.get("latitude"), "latitude", required=True)
    lng = number(params.get("longitude"), "longitude", required=True)
    assert lat is not None and lng is not None
    if lat == 0 and lng == 0:
        raise Invalid("zero coordinates (0, 0)")
    if lat == 0 or lng == 0:
        raise Invalid(f"zero {'latitude' if lat == 0 else 'longitude'} ({lat:g}, {lng:g})")
    if not -90 <= lat <= 90 or not -180 <= lng <= 180:
        raise Invalid(f"coordinates out of range ({lat:g}, {lng:g})")
    height_raw = params.get("heightAgl")
    if height_raw is None:
        height_raw = params.get("height")
    height = number(height_raw, "height", required=False)
    azimuth = number(params.get("antennaAzimuth"), "antenna azimuth", required=False)
    if azimuth is not None and not -360 <= azimuth <= 360:
        raise Invalid(f"antenna azimuth {azimuth:g} is out of range")
    anc = _obj(item.get("ancestry"))
    region, market, site = _obj(anc.get("region")), _obj(anc.get("market")), _obj(anc.get("site"))
    cell, sector = _obj(anc.get("cell")), _obj(anc.get("sector"))
    cell_d, sector_d = _obj(anc.get("cellDetails")), _obj(anc.get("sectorDetails"))
    return [
        serial,
        text(item.get("hostName"), "hostName"),
        text(site.get("name"), "site name"),
        text(market.get("name"), "market name"),
        text(region.get("name"), "region name"),
        lat,
        lng,
        height,
        azimuth,
        text(item.get("band"), "band"),
        item.get("connected") is True,
        key(region.get("id"), "region id"),
        key(market.get("id"), "market id"),
        key(site.get("id"), "site id"),
        key(cell.get("id"), "cell id"),
        key(sector.get("id") if sector.get("id") is not None else sector_d.get("id"), "sector id"),
        text(cell_d.get("name"), "cell name"),
        text(sector_d.get("name"), "sector name"),
    ]


def sector_of(item: Any) -> str | None:
    """The item's sector id as text, from ``ancestry.sector`` or ``ancestry.sectorDetails``."""
    if not isinstance(item, Mapping):
        return None
    anc = _obj(item.get("ancestry"))
    value = _obj(anc.get("sector")).get("id")
    if value is None:
        value = _obj(anc.get("sectorDetails")).get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        return None
    return str(value)


def rn_link(item: Any) -> tuple[str, str] | None:
    """("master", BN serial) or ("sector", sector id) for an RN item, or None if neither."""
    if not isinstance(item, Mapping):
        return None
    master = item.get("masterSerial")
    if isinstance(master, str) and master.strip():
        return ("master", master.strip())
    sector = sector_of(item)
    return None if sector is None else ("sector", sector)
