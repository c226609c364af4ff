"""The ``tarana-sync`` durable function: fetch, validate, compute, diff, write, delete, finish.

Every phase is a named step, so a retry or a restarted process resumes after
the last one that finished: the list is fetched in chunks of pages
(``fetch-bn-0000``...), stations are written in batches (``write-batch-0001``...)
of idempotent upserts by serial number. Code between steps only rebuilds, from
the steps' stored results, the same in-memory picture on every attempt. Only
stations that changed are written. Deleting stale stations is guarded: an
empty fetch, or one that would delete more than ``delete_guard_share`` of the
table, waits for an operator's confirmation, and a fetch that is not known to
be whole never deletes. The run's log row tells what happened, however the
run ends (see ``core.sync.finalize``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from core.clock import Clock
from core.engine import CancelOn, Context, Cron, Function, On
from core.errors import NonRetriableError, TaranaRejectedError
from core.settings import Settings
from core.sync import fetch as fetching
from core.sync.diff import Plan, as_dict, plan, station_row
from core.sync.events import (
    CANCELLED_FUNCTION,
    DELETE_CONFIRMED,
    RUN_CANCELLED,
    SYNC_CANCELLED,
    SYNC_COMPLETED,
    SYNC_FAILED,
    SYNC_FUNCTION,
    SYNC_REQUESTED,
    WATCH_FUNCTION,
    SyncOptions,
)
from core.sync.finalize import Finalizer, Watcher, scrub
from core.sync.validate import CONNECTED, SECTOR_ID
from core.tarana.client import TaranaClient
from jobstore import stations, synclogs
from jobstore.db import Database
from jobstore.stations import Row
from jobstore.synclogs import SyncStatus

PAGES_PER_STEP = 250  # 2,500 devices per fetch step: a retry re-fetches at most that many
MAX_CHUNKS = 100_000  # a list that never ends is a portal bug, not a reason to loop forever
VERIFY_LIMIT = 5_000  # stations missing from the list that are looked up one by one
DUPLICATE = "duplicate serial number: listed more than once; the first listing was used"


def sync_functions(
    db: Database,
    settings: Settings,
    client_factory: Callable[[], TaranaClient],
    clock: Clock,
    *,
    pages_per_step: int = PAGES_PER_STEP,
) -> list[Function]:
    """The sync, the change watcher, and the recorder of cancelled syncs."""
    sync = TaranaSync(db, settings, client_factory, clock, pages_per_step)
    finalizer = Finalizer(db, clock, settings)
    watcher = Watcher(db, clock)
    return [
        Function(
            id=SYNC_FUNCTION,
            name="Tarana base-station sync",
            handler=sync.handle,
            triggers=(Cron(settings.sync_cron, settings.timezone), On(SYNC_REQUESTED)),
            retries=3,
            singleton=True,
            cancel_on=(CancelOn(SYNC_CANCELLED, match="data.sync_id"),),
            # a guarded delete may wait for its confirmation this long
            timeout_s=settings.confirm_timeout_s + 6 * 3600,
            on_failure=finalizer.on_failure,
            description="Fetch every base station from the Tarana portal and store what changed.",
        ),
        Function(
            id=WATCH_FUNCTION,
            name="Station change watch",
            handler=watcher.handle,
            triggers=(On(SYNC_COMPLETED), On(SYNC_FAILED)),
            retries=3,
            concurrency=1,  # each run compares with the state the previous one left
            description="Record which stations appeared, disappeared, went offline or came online.",
        ),
        Function(
            id=CANCELLED_FUNCTION,
            name="Tarana sync: cancellation recorder",
            handler=finalizer.on_cancelled,
            triggers=(On(RUN_CANCELLED),),
            retries=3,
        ),
    ]


class TaranaSync:
    """The handler and its steps; one instance serves every run of the function."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        client_factory: Callable[[], TaranaClient],
        clock: Clock,
        pages_per_step: int = PAGES_PER_STEP,
    ) -> None:
        if pages_per_step < 1:
            raise ValueError("pages_per_step must be at least 1")
        self.db = db
        self.settings = settings
        self.client_factory = client_factory
        self.clock = clock
        self.pages_per_step = pages_per_step

    def handle(self, ctx: Context) -> dict[str, Any]:
        opts = SyncOptions.from_data(ctx.data)
        begin = ctx.step.run("begin", self._begin, ctx, opts)
        run = SyncRun(self, ctx, opts, str(begin["sync_id"]))
        synclogs.attach_run(
            self.db, run.sync_id, ctx.run_id, ctx.attempt, ctx.trigger.value, ctx.triggered_by
        )
        try:
            return run.execute()
        finally:
            run.portal.close()

    def _begin(self, ctx: Context, opts: SyncOptions) -> dict[str, Any]:
        sync_id = opts.sync_id or ctx.run_id
        now = self.clock.now().timestamp()
        synclogs.create_log(
            self.db,
            {
                "id": sync_id,
                "run_id": ctx.run_id,
                "status": SyncStatus.RUNNING.value,
                "trigger_type": ctx.trigger.value,
                "triggered_by": ctx.triggered_by,
                "dry_run": opts.dry_run,
                "delete_stale": opts.delete_stale,
                "attempt": ctx.attempt,
                "started_at": now,
                "errors": "[]",
            },
        )
        return {"sync_id": sync_id, "started_at": now}


class SyncRun:
    """One attempt at one sync: rebuilds its picture from stored steps and runs the rest."""

    def __init__(self, sync: TaranaSync, ctx: Context, opts: SyncOptions, sync_id: str) -> None:
        self.s = sync
        self.db = sync.db
        self.ctx = ctx
        self.opts = opts
        self.sync_id = sync_id
        self.portal = fetching.Portal(sync.client_factory)
        self.warnings: list[str] = []
        self.pages = 0  # list pages fetched so far (BNs, then RNs)
        self.delete_candidates = 0

    # --- the steps, in order -------------------------------------------------

    def execute(self) -> dict[str, Any]:
        bn_chunks = self.fetch("BN")
        rn_chunks = self.fetch("RN")
        checked = self.step("validate", self._validate, bn_chunks)
        fetch_ok = self._fetch_whole(bn_chunks)
        computed = self.step("compute", self._compute, bn_chunks, rn_chunks, checked)
        final = self._final_rows(bn_chunks, checked, computed["connections"])
        del rn_chunks
        listed = self._listed_serials(bn_chunks)
        observed_at = float(bn_chunks[-1]["at"])
        del bn_chunks
        diff = self.step("diff", self._diff, final, listed, fetch_ok)
        if not self.opts.dry_run:
            self.write(final, diff["insert"] + diff["update"], observed_at)
        deleted, missing = self.retire(diff, fetch_ok, checked, observed_at)
        summary = self.step(
            "finish", self._finish, checked, computed, diff, fetch_ok, deleted, missing, observed_at
        )
        self.ctx.step.send_event("send-completed", SYNC_COMPLETED, summary)
        return dict(summary)

    def fetch(self, kind: str) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        offset, expected = 0, 0
        for index in range(MAX_CHUNKS):
            chunk = self.step(
                f"fetch-{kind.lower()}-{index:04d}", self._fetch, kind, offset, expected
            )
            chunks.append(chunk)
            expected = int(chunk["total_count"])
            if chunk["complete"] or int(chunk["next_offset"]) <= offset:
                break
            offset = int(chunk["next_offset"])
        key = "stations_fetched" if kind == "BN" else "rns_fetched"
        self.pages += sum(int(c["pages"]) for c in chunks)
        # absolute values, so repeating this on a later attempt changes nothing
        synclogs.update_log(
            self.db,
            self.sync_id,
            pages=self.pages,
            **{key: sum(int(c["items"]) for c in chunks)},
        )
        return chunks

    def _fetch(self, kind: str, offset: int, expected: int) -> dict[str, Any]:
        client = self.portal.get()
        before = client.retries
        try:
            return fetching.fetch_chunk(
                client, kind, offset, self.s.pages_per_step, expected, self.s.clock, self.progress
            )
        finally:
            # every retry that happened counts, also those of an attempt that failed
            synclogs.add_to_log(self.db, self.sync_id, retries=client.retries - before)

    def _validate(self, bn_chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        drop: list[list[int]] = []
        skipped: list[tuple[str | None, str]] = []
        duplicates = invalid = online = offline = 0
        total = sum(len(c["rows"]) + len(c["skipped"]) for c in bn_chunks)
        for ci, chunk in enumerate(bn_chunks):
            for serial in chunk["duplicates"]:
                duplicates += 1
                skipped.append((serial, DUPLICATE))
            for serial, reason, _sector in chunk["skipped"]:
                if serial is not None and serial in seen:
                    duplicates += 1
                    skipped.append((serial, DUPLICATE))
                    continue
                if serial is not None:
                    seen.add(serial)
                invalid += 1
                skipped.append((serial, reason))
            for ri, row in enumerate(chunk["rows"]):
                if row[0] in seen:
                    duplicates += 1
                    drop.append([ci, ri])
                    skipped.append((row[0], DUPLICATE))
                    continue
                seen.add(row[0])
                if row[CONNECTED] is True:
                    online += 1
                else:
                    offline += 1
        synclogs.replace_skipped(self.db, self.sync_id, skipped)
        self.progress(total, total, f"checked {total:,} records: {len(skipped):,} skipped")
        return {
            "drop": drop,
            "skipped": len(skipped),
            "invalid": invalid,
            "duplicates": duplicates,
            "fetched": online + offline,
            "online": online,
            "offline": offline,
        }

    def _compute(
        self,
        bn_chunks: Sequence[Mapping[str, Any]],
        rn_chunks: Sequence[Mapping[str, Any]],
        checked: Mapping[str, Any],
    ) -> dict[str, Any]:
        owners = fetching.sector_owners(bn_chunks, SECTOR_ID)
        retries_before: list[int] = []

        def lookup(serials: list[str]) -> dict[str, str | None]:
            client = self.portal.get()
            retries_before.append(client.retries)
            try:
                return fetching.lookup_masters(client, self.s.settings.tarana_concurrency)(serials)
            finally:
                synclogs.add_to_log(
                    self.db, self.sync_id, retries=client.retries - retries_before[0]
                )

        result = fetching.count_connections(rn_chunks, owners, lookup, self.progress)
        valid = {row[0] for chunk in bn_chunks for row in chunk["rows"]}
        result["connections"] = {k: v for k, v in result["connections"].items() if k in valid}
        self.progress(1, 1, f"linked {result['connected_rns']:,} connected RNs to base stations")
        if result["unattributed"]:
            result["warning"] = (
                f"{result['unattributed']:,} connected RNs could not be linked to a base station"
            )
        return result

    def _diff(self, final: Mapping[str, Row], listed: set[str], fetch_ok: bool) -> dict[str, Any]:
        self.progress(
            0, len(final), f"comparing {len(final):,} fetched stations with the stored ones"
        )
        result = plan(final, stations.iter_current(self.db), keep_before=self.opts.dry_run)
        if fetch_ok:
            # listed but skipped as invalid: still there upstream, so neither stale nor missing
            result.stale = [s for s in result.stale if s not in listed]
            keep = set(result.stale)
            result.newly_missing = [s for s in result.newly_missing if s in keep]
        else:
            result.stale, result.newly_missing = [], []
        if self.opts.dry_run:
            synclogs.replace_diffs(self.db, self.sync_id, self._dry_diffs(result, final))
        self.progress(len(final), len(final), f"compared {len(final):,} stations")
        return result.as_json()

    def _dry_diffs(
        self, diff: Plan, final: Mapping[str, Row]
    ) -> Iterator[tuple[str, str, Any, Any]]:
        for s in diff.insert:
            yield s, "insert", None, as_dict(final[s])
        for s in diff.update:
            yield s, "update", as_dict(diff.before[s]), as_dict(final[s])
        gone = diff.stale if self.opts.delete_stale else diff.newly_missing
        action = "delete" if self.opts.delete_stale else "missing"
        for s in gone:
            yield s, action, as_dict(diff.before[s]), None

    def write(self, final: Mapping[str, Row], serials: Sequence[str], observed_at: float) -> None:
        size = self.s.settings.write_batch
        batches = math.ceil(len(serials) / size)
        for b in range(batches):
            part = serials[b * size : (b + 1) * size]
            self.step(
                f"write-batch-{b + 1:04d}",
                self._write_batch,
                b + 1,
                batches,
                part,
                final,
                observed_at,
            )

    def _write_batch(
        self, number: int, batches: int, serials: Sequence[str], final: Mapping[str, Row], at: float
    ) -> dict[str, Any]:
        self.progress(number - 1, batches, f"writing batch {number}/{batches}")
        rows = [(*final[s], at, at, at, None) for s in serials]
        stations.upsert_stations(self.db, rows)
        self.progress(number, batches, f"writing batch {number}/{batches}")
        return {"rows": len(rows)}

    def retire(
        self,
        diff: Mapping[str, Any],
        fetch_ok: bool,
        checked: Mapping[str, Any],
        observed_at: float,
    ) -> tuple[int, int]:
        """Delete stale stations (guarded) or mark them missing; (deleted, marked missing).

        Before acting, each station the list did not show is looked up on its
        own: a list that changed while it was paged skips stations without any
        other sign, and the portal still knowing a station proves it is not gone.
        """
        stale: list[str] = diff["stale"]
        newly: list[str] = diff["newly_missing"]
        fetched = int(checked["fetched"])
        if self.opts.dry_run:
            return 0, 0
        if not fetch_ok:
            self.warnings.append(
                "the station list changed or ended early while it was fetched, so no station "
                "was deleted or marked missing"
            )
            return 0, 0
        candidates = stale if self.opts.delete_stale else newly
        if not candidates:
            return 0, 0
        if fetched == 0:
            # an empty list (an outage?) is not worth a lookup per station: only an
            # operator may act on it, and only by deleting
            if self.opts.delete_stale:
                return self._delete_guarded(stale, int(diff["table_rows"]), fetched), 0
            self.warnings.append(
                f"the portal listed no valid base station while {len(stale):,} are stored; "
                "none was marked missing"
            )
            return 0, 0
        if len(candidates) > VERIFY_LIMIT:
            if self.opts.delete_stale:
                reason = (
                    f"{len(candidates):,} stations are missing from the list, more than the "
                    f"{VERIFY_LIMIT:,} that can be checked one by one"
                )
                return self._delete_guarded(stale, int(diff["table_rows"]), fetched, reason), 0
            self.warnings.append(
                f"{len(candidates):,} stations are missing from the list, more than the "
                f"{VERIFY_LIMIT:,} that can be checked one by one: none was marked missing"
            )
            return 0, 0
        verified = self.step("verify-stale", self._verify, candidates)
        gone = set(verified["gone"])
        if verified["listed"]:
            self.warnings.append(
                f"{len(verified['listed']):,} stations missing from the list are still known to "
                "the portal (the list changed while it was read); they were left as they are"
            )
        if self.opts.delete_stale:
            confirmed_gone = [s for s in stale if s in gone]
            if confirmed_gone:
                return self._delete_guarded(confirmed_gone, int(diff["table_rows"]), fetched), 0
            return 0, 0
        to_mark = [s for s in newly if s in gone]
        if to_mark:
            marked = self.step("mark-missing", self._mark_missing, to_mark, observed_at)
            return 0, int(marked["marked"])
        return 0, 0

    def _delete_guarded(
        self, stale: list[str], table_rows: int, fetched: int, reason: str = ""
    ) -> int:
        self.delete_candidates = len(stale)
        reason = reason or self._guard(stale, table_rows, fetched)
        if reason and not self._confirm(len(stale), reason):
            return 0
        return int(self.step("delete-stale", self._delete, stale)["deleted"])

    def _verify(self, serials: Sequence[str]) -> dict[str, Any]:
        self.progress(0, len(serials), f"checking {len(serials):,} stations missing from the list")
        client = self.portal.get()
        before = client.retries
        try:
            known = fetching.still_known(client, list(serials), self.s.settings.tarana_concurrency)
        finally:
            synclogs.add_to_log(self.db, self.sync_id, retries=client.retries - before)
        listed = [s for s in serials if known.get(s)]
        gone = [s for s in serials if not known.get(s)]
        self.progress(
            len(serials), len(serials), f"{len(gone):,} gone, {len(listed):,} still known"
        )
        return {"gone": gone, "listed": listed}

    def _guard(self, stale: Sequence[str], table_rows: int, fetched: int) -> str:
        share = self.s.settings.delete_guard_share
        if fetched == 0:
            return f"the portal returned no valid station, so deleting would empty the table ({len(stale):,} stations)"
        if table_rows and len(stale) > share * table_rows:
            return (
                f"{len(stale):,} of {table_rows:,} stations ({len(stale) / table_rows:.0%}) would be "
                f"deleted, more than the {share:.0%} allowed without confirmation"
            )
        return ""

    def _confirm(self, candidates: int, reason: str) -> bool:
        synclogs.update_log(
            self.db,
            self.sync_id,
            status=SyncStatus.NEEDS_CONFIRMATION.value,
            needs_confirmation=True,
            delete_candidates=candidates,
        )
        event = self.ctx.step.wait_for_event(
            "confirm-delete",
            DELETE_CONFIRMED,
            # explicit, not match=: a scheduled run's event has no sync_id to match on
            where={"data.sync_id": self.sync_id},
            timeout_s=self.s.settings.confirm_timeout_s,
        )
        synclogs.update_log(
            self.db, self.sync_id, status=SyncStatus.RUNNING.value, needs_confirmation=False
        )
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and data.get("confirm") is True:
            return True
        if event is None:
            why = f"no confirmation within {self.s.settings.confirm_timeout_s:,} s"
        else:
            who = data.get("by") if isinstance(data, dict) else None
            why = f"declined{' by ' + str(who) if who else ''}"
        self.warnings.append(f"deletion held back because {reason}; {why}: nothing was deleted")
        return False

    def _delete(self, serials: Sequence[str]) -> dict[str, Any]:
        self.progress(0, len(serials), f"deleting {len(serials):,} stale stations")
        deleted = stations.delete_stations(self.db, serials)
        self.progress(len(serials), len(serials), f"deleted {deleted:,} stale stations")
        return {"deleted": deleted}

    def _mark_missing(self, serials: Sequence[str], observed_at: float) -> dict[str, Any]:
        previous = synclogs.previous_seen_at(self.db, self.sync_id)
        marked = stations.mark_missing(self.db, serials, observed_at, previous)
        self.progress(len(serials), len(serials), f"marked {marked:,} stations missing")
        return {"marked": marked}

    def _finish(
        self,
        checked: Mapping[str, Any],
        computed: Mapping[str, Any],
        diff: Mapping[str, Any],
        fetch_ok: bool,
        deleted: int,
        missing: int,
        observed_at: float,
    ) -> dict[str, Any]:
        started = self.s.clock.now().timestamp()
        warnings = list(self.warnings)
        if computed.get("warning"):
            warnings.append(str(computed["warning"]))
        if warnings:
            synclogs.add_to_log(self.db, self.sync_id, errors=warnings)
        log = synclogs.get_sync_log(self.db, self.sync_id)
        had_errors = bool(log and log.errors)
        skipped = int(checked["skipped"])
        status = (
            SyncStatus.COMPLETED_WITH_WARNINGS if skipped or had_errors else SyncStatus.COMPLETED
        )
        dry = self.opts.dry_run
        counts = {
            "stations_fetched": int(checked["fetched"]),
            "inserted": 0 if dry else len(diff["insert"]),
            "updated": 0 if dry else len(diff["update"]),
            "deleted": deleted,
            "missing": missing,
            "unchanged": int(diff["unchanged"]),
            "skipped": skipped,
            "duplicates": int(checked["duplicates"]),
            "delete_candidates": self.delete_candidates,
            "online": int(checked["online"]),
            "offline": int(checked["offline"]),
        }
        whole = fetch_ok and not dry and int(checked["fetched"]) > 0
        ended = self.s.clock.now().timestamp()
        duration = synclogs.step_seconds(self.db, self.ctx.run_id) + (ended - started)
        synclogs.update_log(
            self.db,
            self.sync_id,
            status=status.value,
            needs_confirmation=False,
            fetch_complete=fetch_ok,
            seen_at=observed_at if whole else None,
            completed_at=ended,
            duration_s=duration,
            **counts,
        )
        return {
            "sync_id": self.sync_id,
            "run_id": self.ctx.run_id,
            "status": status.value,
            "dry_run": dry,
            "delete_stale": self.opts.delete_stale,
            "would_insert": len(diff["insert"]) if dry else 0,
            "would_update": len(diff["update"]) if dry else 0,
            "finished_at": ended,
            "duration_s": duration,
            **counts,
        }

    # --- rebuilding the picture between steps ---------------------------------

    @staticmethod
    def _fetch_whole(bn_chunks: Sequence[Mapping[str, Any]]) -> bool:
        """True when the BN list was read to its end and its length never changed meanwhile.

        The length is compared at the start of the pass, at the end of every
        chunk, and with the count of items actually received.
        """
        last = bn_chunks[-1]
        totals = {int(c["total_count"]) for c in bn_chunks}
        start = bn_chunks[0].get("total_at_start")
        if start is not None:
            totals.add(int(start))
        return bool(last["complete"]) and totals == {int(last["next_offset"])}

    @staticmethod
    def _final_rows(
        bn_chunks: Sequence[Mapping[str, Any]],
        checked: Mapping[str, Any],
        connections: Mapping[str, int],
    ) -> dict[str, Row]:
        drop: dict[int, set[int]] = {}
        for ci, ri in checked["drop"]:
            drop.setdefault(ci, set()).add(ri)
        final: dict[str, Row] = {}
        for ci, chunk in enumerate(bn_chunks):
            dropped = drop.get(ci, set())
            for ri, bn in enumerate(chunk["rows"]):
                if ri not in dropped:
                    final[bn[0]] = station_row(bn, connections.get(bn[0], 0))
        return final

    @staticmethod
    def _listed_serials(bn_chunks: Sequence[Mapping[str, Any]]) -> set[str]:
        return {s for c in bn_chunks for s, _r, _sector in c["skipped"] if isinstance(s, str)}

    # --- plumbing -------------------------------------------------------------

    def progress(self, current: int, total: int, message: str) -> None:
        self.ctx.step.progress(current, total, message)

    def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``ctx.step.run`` that records every failed attempt in the log and fails fast
        on refusals that retrying cannot fix (bad credentials, a rejected request)."""

        def body() -> Any:
            try:
                return fn(*args)
            except TaranaRejectedError as exc:
                self._record_error(name, exc)
                raise NonRetriableError(
                    f"the portal refused the sync's request: {scrub(str(exc), self.s.settings)}"
                ) from exc
            except Exception as exc:
                self._record_error(name, exc)
                raise

        return self.ctx.step.run(name, body)

    def _record_error(self, step: str, exc: BaseException) -> None:
        text = scrub(f"{type(exc).__name__}: {exc}", self.s.settings)
        try:
            synclogs.add_to_log(
                self.db, self.sync_id, errors=[f"{step} (attempt {self.ctx.attempt}): {text}"]
            )
        except Exception:  # noqa: BLE001 - the step's own error matters more than a lost log line
            self.ctx.log.warning("sync %s: could not record an error in its log", self.sync_id)
