"""Fetching the device list in checkpointable chunks, and counting each BN's connected RNs.

A chunk is ``pages`` pages of the list from one offset; its result is compact
(valid BN rows as lists, skipped BNs as serial and reason, connected RNs only
as serials grouped by what links them to a BN), because it is stored as a step
result and 100,000 raw items would be hundreds of megabytes. Records are
checked here, before the checkpoint, also because raw items may hold NaN,
which a step result may not. RNs are linked to their BN by ``masterSerial``;
list items usually lack it, so the RN's sector (one BN per sector) stands in,
and the few RNs neither identifies are looked up one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from core.clock import Clock
from core.errors import TaranaAuthError, TaranaRejectedError
from core.sync.validate import Invalid, check_bn, clean_serial, rn_link, sector_of, serial_of
from core.tarana.client import PAGE_SIZE, TaranaClient

Progress = Callable[[int, int, str], None]


@dataclass
class Portal:
    """One client per handler invocation, made on first use and closed at the end."""

    factory: Callable[[], TaranaClient]
    client: TaranaClient | None = None

    def get(self) -> TaranaClient:
        if self.client is None:
            self.client = self.factory()
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def fetch_chunk(
    client: TaranaClient,
    kind: str,
    offset: int,
    pages: int,
    expected_total: int,
    clock: Clock,
    progress: Progress,
) -> dict[str, Any]:
    """Fetch up to ``pages`` pages of BNs or RNs from ``offset``; the compact result."""
    first_page = offset // PAGE_SIZE
    label = "BNs" if kind == "BN" else "RNs"
    # The list's length when the pass begins: the client reports only the last
    # page's, and a list that shrank while it was paged has skipped stations
    # without any other sign.
    total_at_start = client.device_page(0, kind).total_count if offset == 0 else None

    def on_page(done: int, estimate: int) -> None:
        # the list's length is known from the previous chunk; in the first, from this one
        known = -(-expected_total // PAGE_SIZE) if expected_total else first_page + estimate
        page = first_page + done
        total = max(known, page)
        progress(page, total, f"fetching {label}: page {page:,} of ~{total:,}")

    report = client.fetch_devices(kind, start_offset=offset, max_pages=pages, on_page=on_page)
    result: dict[str, Any] = {
        "kind": kind,
        "offset": offset,
        "items": len(report.items),
        "pages": report.pages,
        "duplicates": [clean_serial(s) for s in report.duplicates],
        "retries": report.retries,
        "total_count": report.total_count,
        "total_at_start": total_at_start,
        "next_offset": report.next_offset,
        "complete": report.complete,
        "at": clock.now().timestamp(),
    }
    if kind == "BN":
        rows: list[list[Any]] = []
        skipped: list[list[Any]] = []
        for item in report.items:
            try:
                rows.append(check_bn(item))
            except Invalid as exc:
                skipped.append([serial_of(item), str(exc), sector_of(item)])
        result["rows"] = rows
        result["skipped"] = skipped
    else:
        by_master: dict[str, list[str]] = {}
        by_sector: dict[str, list[str]] = {}
        unlinked: list[str] = []
        connected = 0
        for item in report.items:
            serial = serial_of(item)
            if serial is None or item.get("connected") is not True:
                continue
            connected += 1
            link = rn_link(item)
            if link is None:
                unlinked.append(serial)
            elif link[0] == "master":
                by_master.setdefault(link[1], []).append(serial)
            else:
                by_sector.setdefault(link[1], []).append(serial)
        result.update(
            connected=connected, by_master=by_master, by_sector=by_sector, unlinked=unlinked
        )
    return result


def sector_owners(
    bn_chunks: Sequence[Mapping[str, Any]], sector_index: int
) -> dict[str, str | None]:
    """Sector id -> the one BN serial listed with it (None when several BNs claim it).

    Skipped BNs count too: their RNs then resolve to a BN that is not stored
    instead of costing a lookup each.
    """
    owners: dict[str, str | None] = {}

    def claim(sector: Any, serial: Any) -> None:
        if not isinstance(sector, str) or not isinstance(serial, str):
            return
        if sector in owners and owners[sector] != serial:
            owners[sector] = None
        else:
            owners[sector] = serial

    for chunk in bn_chunks:
        for row in chunk["rows"]:
            claim(row[sector_index], row[0])
        for serial, _reason, sector in chunk["skipped"]:
            claim(sector, serial)
    return owners


def count_connections(
    rn_chunks: Sequence[Mapping[str, Any]],
    owners: Mapping[str, str | None],
    lookup: Callable[[list[str]], dict[str, str | None]],
    progress: Progress,
) -> dict[str, Any]:
    """Connected RNs per BN serial; RNs not linked by list data are looked up."""
    master_of: dict[str, str] = {}
    unresolved: list[str] = []
    for chunk in rn_chunks:
        for bn, serials in chunk["by_master"].items():
            for rn in serials:
                master_of.setdefault(rn, bn)
        for sector, serials in chunk["by_sector"].items():
            owner = owners.get(sector)
            for rn in serials:
                if rn in master_of:
                    continue
                if owner is None:
                    unresolved.append(rn)
                else:
                    master_of[rn] = owner
        unresolved.extend(chunk["unlinked"])
    pending = sorted({rn for rn in unresolved if rn not in master_of})
    progress(0, max(1, len(pending)), f"looking up {len(pending):,} RNs without a known BN")
    found = lookup(pending) if pending else {}
    unattributed = 0
    for rn in pending:
        bn = found.get(rn)
        if bn:
            master_of[rn] = bn
        else:
            unattributed += 1
    counts: dict[str, int] = {}
    for bn in master_of.values():
        counts[bn] = counts.get(bn, 0) + 1
    return {
        "connections": counts,
        "connected_rns": len(master_of) + unattributed,
        "looked_up": len(pending),
        "unattributed": unattributed,
    }


def lookup_masters(
    client: TaranaClient, workers: int
) -> Callable[[list[str]], dict[str, str | None]]:
    """A lookup of RNs' ``masterSerial`` through the single-device endpoint, in parallel.

    An RN the portal no longer knows (404 and other refusals) stays
    unattributed; transient and auth failures propagate to fail the step.
    """

    def one(serial: str) -> tuple[str, str | None]:
        try:
            detail = client.device(serial)
        except TaranaRejectedError as exc:
            if isinstance(exc, TaranaAuthError):
                raise
            return serial, None
        master = detail.get("masterSerial")
        return serial, master if isinstance(master, str) and master else None

    def run(serials: list[str]) -> dict[str, str | None]:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="tarana-rn") as pool:
            return dict(pool.map(one, serials))

    return run


def still_known(client: TaranaClient, serials: list[str], workers: int) -> dict[str, bool]:
    """Whether the portal still knows each device (its single-device answer is not 404).

    A refusal other than "not found" counts as known, so that doubt never
    deletes or hides a station; transient and auth failures fail the step.
    """

    def one(serial: str) -> tuple[str, bool]:
        try:
            client.device(serial)
        except TaranaRejectedError as exc:
            if isinstance(exc, TaranaAuthError):
                raise
            return serial, exc.status_code != 404
        return serial, True

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="tarana-check") as pool:
        return dict(pool.map(one, serials))
