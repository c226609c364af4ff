"""Deciding what a sync writes: compare fetched stations with stored ones, field by field.

Rows are tuples in ``jobstore.stations.DATA_COLUMNS`` order on both sides, so
one tuple comparison per station tells changed from unchanged. A station
that is marked missing but was fetched again counts as changed (its
``missing_since`` must be cleared). Stored stations absent from the fetch are
stale; only a fetch known to be whole may act on them, which the caller decides.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.sync.validate import CONNECTED
from jobstore.stations import DATA_COLUMNS, Row

STATUS_ONLINE, STATUS_OFFLINE = "online", "offline"


def station_row(bn: Sequence[Any], connections: int) -> Row:
    """A station row (``DATA_COLUMNS`` order) from a compact BN row and its RN count.

    Strings most stations share are interned: at 100,000 stations that keeps
    tens of megabytes of identical market, region and band names out of memory.
    """
    status = STATUS_ONLINE if bn[CONNECTED] is True else STATUS_OFFLINE
    return (
        bn[0],  # serial_number
        bn[1],  # hostname
        bn[2],  # site_name
        int(connections),
        _shared(bn[3]),  # market
        bn[5],  # lat
        bn[6],  # lng
        _shared(bn[4]),  # region
        bn[7],  # height_m
        bn[8],  # azimuth_deg
        _shared(bn[9]),  # band
        status,
        _shared(bn[11]),  # region_id
        _shared(bn[12]),  # market_id
        *bn[13:18],  # site_id, cell_id, sector_id, cell_name, sector_name
    )


def _shared(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def as_dict(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(DATA_COLUMNS, row, strict=True))


@dataclass
class Plan:
    insert: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    unchanged: int = 0
    stale: list[str] = field(default_factory=list)  # stored, not fetched
    newly_missing: list[str] = field(default_factory=list)  # stale and not yet marked missing
    changed_fields: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0
    before: dict[str, Row] = field(default_factory=dict)  # stored rows of updates and stale

    def as_json(self) -> dict[str, Any]:
        return {
            "insert": self.insert,
            "update": self.update,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "newly_missing": self.newly_missing,
            "changed_fields": self.changed_fields,
            "table_rows": self.table_rows,
        }


def plan(
    fetched: Mapping[str, Row],
    current: Iterable[tuple[Row, float | None]],
    *,
    keep_before: bool = False,
) -> Plan:
    """Inserts, updates, the unchanged count and the stale serials.

    ``current`` is consumed once, row by row, so the stored table need not fit
    in memory next to the fetched one. ``keep_before`` keeps the stored rows of
    updated and stale stations, for a dry run's diff.
    """
    result = Plan()
    counts = dict.fromkeys(DATA_COLUMNS, 0)
    matched: set[str] = set()
    for old, missing_since in current:
        result.table_rows += 1
        serial = old[0]
        row = fetched.get(serial)
        if row is None:
            result.stale.append(serial)
            if missing_since is None:
                result.newly_missing.append(serial)
            if keep_before:
                result.before[serial] = old
            continue
        matched.add(serial)
        if old == row and missing_since is None:
            result.unchanged += 1
            continue
        result.update.append(serial)
        if keep_before:
            result.before[serial] = old
        for name, a, b in zip(DATA_COLUMNS, old, row, strict=True):
            if a != b:
                counts[name] += 1
        if missing_since is not None:
            counts["missing_since"] = counts.get("missing_since", 0) + 1
    result.insert = [s for s in fetched if s not in matched]
    result.changed_fields = {k: v for k, v in counts.items() if v}
    return result
