"""Stored stations with hostile text, written through the product's own upsert.

Names come from the hostile corpus's kind of input (HTML, script, formulas,
SQL, LIKE and regex characters); everything else is plausible. The rows are
what a sync would write for records the validator accepts, since these names
are valid text and are stored verbatim.
"""

from __future__ import annotations

from typing import Any

from jobstore import stations
from jobstore.db import Database
from jobstore.stations import DATA_COLUMNS

HOSTILE_NAMES = (
    "100% Mall",
    "Under_score Tower",
    "O'Brien's Tower",
    "'; DROP TABLE base_stations; --",
    "Regex .* Site",
    "Bracket [1] Park",
    "Back\\slash Depot",
    "Caret ^ Dollar $ Pipe | Plus +",
    "Percent %% and _ together",
    "<script>alert('site')</script>",
    '<img src=x onerror="alert(1)">',
    "=cmd|' /C calc'!A0",
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    "{s}{h}{{7*7}}",
    'Quote " and, comma\nnewline =1+1',
    "Alex\r=cmd|' /C calc'!A0",
    "Mall\n@SUM(1)",
    "Plain Site",
)


def station(n: int, **values: Any) -> tuple[Any, ...]:
    """One row in ``WRITE_COLUMNS`` order; ``values`` override columns by name."""
    row: dict[str, Any] = {
        "serial_number": f"S134F{2220700000 + n}",
        "hostname": f"X{5000 + n}-BN-45",
        "site_name": f"Site {n}",
        "active_connections": n % 4,
        "market": "JHB Gauteng",
        "lat": -26.1 - n / 1000,
        "lng": 28.05 + n / 1000,
        "region": "South Africa",
        "height_m": 20.0,
        "azimuth_deg": 45.0,
        "band": "5ghz",
        "device_status": "online" if n % 3 else "offline",
        "region_id": "7001",
        "market_id": "7101",
        "site_id": str(80000 + n),
        "cell_id": str(500000 + n),
        "sector_id": str(1000000 + n),
        "cell_name": f"X{5000 + n}",
        "sector_name": f"X{5000 + n}-BN-45",
    }
    row.update(values)
    at = 1767225600.0
    return (*(row[c] for c in DATA_COLUMNS), at, at, at, None)


def seed_hostile(db: Database) -> list[tuple[Any, ...]]:
    """Store one station per hostile name (as site name), plus hostile hostnames and markets."""
    rows = [station(i, site_name=name) for i, name in enumerate(HOSTILE_NAMES)]
    n = len(rows)
    rows.append(
        station(n, hostname="-host=1+1", market="@market", region="=region()", band="+band")
    )
    rows.append(station(n + 1, serial_number="S1'; --%_", hostname="host_%_literal"))
    rows.append(station(n + 2, market="<b>JHB</b> & <i>co</i>", hostname="<svg onload=alert(2)>"))
    stations.upsert_stations(db, rows)
    return rows
