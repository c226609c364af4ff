"""Sync history page: every run, charts over time, and one run's detail with its actions.

A run's detail shows its step timeline (a Gantt chart), each step's attempts
and errors, the records it skipped and why, and a dry run's diff. Actions
(cancel, retry from where it failed, confirm or refuse a guarded deletion)
are commands checked by the access guard when they run. An active run's
detail re-reads the database every ``ui_poll_active_s``.
"""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from core.engine import RunDetail, RunRecord
from core.errors import StationsyncError
from core.runtime import Runtime
from core.sync import commands
from jobstore import synclogs
from jobstore.synclogs import SyncLog
from pages import _ui

RETRYABLE = {"failed", "dead", "timed_out", "cancelled"}
SYNC_STATUSES = {"completed_with_warnings", "needs_confirmation"}


def status_of(run: RunRecord, log: SyncLog | None) -> str:
    """The most telling status: the sync's own when it says more than the run's."""
    if log is not None and str(log.status) in SYNC_STATUSES and log.run_id in (None, run.id):
        return str(log.status)
    return str(run.status)


def badge(status: str) -> str:
    return _ui.run_badge(status)


def color_scale(present: Any) -> alt.Scale:
    """Status labels to their colours, listing only the statuses present (for the legend)."""
    labels = {_ui.run_label(str(s)) for s in present}
    styles = {v[3]: v[0] for v in _ui.RUN_STYLE.values() if v[3] in labels}
    for extra in sorted(labels - set(styles)):
        styles[extra] = _ui.GRAY
    return alt.Scale(domain=list(styles), range=list(styles.values()))


TIME_AXIS = alt.Axis(format="%d %b %H:%M", labelAngle=0, labelOverlap=True)


def logs_for(runs: list[RunRecord], logs: list[SyncLog]) -> dict[str, SyncLog]:
    by_run = {g.run_id: g for g in logs if g.run_id}
    by_id = {g.id: g for g in logs}
    runs_by_id = {r.id: r for r in runs}
    out: dict[str, SyncLog] = {}
    for run in runs:
        cursor: RunRecord | None = run
        for _ in range(20):  # a retry shares the log of the run it resumed
            if cursor is None:
                break
            found = by_run.get(cursor.id) or by_id.get(cursor.id)
            if found is not None:
                out[run.id] = found
                break
            cursor = runs_by_id.get(cursor.parent_run_id or "")
    return out


# --- charts -----------------------------------------------------------------


def run_frame(runs: list[RunRecord], logs: dict[str, SyncLog], tz: str) -> pd.DataFrame:
    """Finished runs for the duration chart: the run's own clock is the truth."""
    rows = [
        {
            "when": pd.Timestamp(r.started_at or r.created_at, unit="s", tz="UTC")
            .tz_convert(tz)
            .tz_localize(None),
            "duration_s": r.duration_s,
            "status": _ui.run_label(status_of(r, logs.get(r.id))),
            "trigger_type": _ui.TRIGGER_LABELS.get(str(r.trigger), str(r.trigger)),
            "fetched": logs[r.id].stations_fetched if r.id in logs else None,
        }
        for r in runs
        if r.duration_s is not None
    ]
    return pd.DataFrame(rows, columns=["when", "duration_s", "status", "trigger_type", "fetched"])


def charts(rt: Runtime, runs: list[RunRecord], logs: dict[str, SyncLog]) -> None:
    frame = _ui.attempt("read the sync history", lambda: synclogs.sync_history_frame(rt.db))
    if frame is None:
        return
    tz = rt.settings.timezone
    frame = frame.copy()
    frame["when"] = frame["started_at"].dt.tz_convert(tz).dt.tz_localize(None)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("**Sync duration**")
        done = run_frame(runs, logs, tz)
        if done.empty:
            st.caption("No finished sync yet.")
        else:
            chart = (
                alt.Chart(done)
                .mark_circle(size=70, opacity=0.9)
                .encode(
                    x=alt.X("when:T", title=f"Started ({tz})", axis=TIME_AXIS),
                    y=alt.Y("duration_s:Q", title="Duration (s)"),
                    color=alt.Color(
                        "status:N",
                        scale=color_scale(done["status"]),
                        legend=alt.Legend(orient="bottom", title=None),
                    ),
                    tooltip=[
                        alt.Tooltip("when:T", title="Started", format="%Y-%m-%d %H:%M:%S"),
                        alt.Tooltip("duration_s:Q", title="Seconds", format=".1f"),
                        alt.Tooltip("status:N", title="Status"),
                        alt.Tooltip("trigger_type:N", title="Trigger"),
                        alt.Tooltip("fetched:Q", title="Fetched", format=","),
                    ],
                )
            )
            line = (
                alt.Chart(done)
                .mark_line(color="#b8c2d0", strokeWidth=1)
                .encode(x="when:T", y="duration_s:Q")
            )
            st.altair_chart(line + chart, width="stretch", height=240)
    with right:
        st.markdown("**Stations online and offline**")
        counts = frame[frame["online"].notna() & ~frame["dry_run"].astype(bool)]
        if counts.empty:
            st.caption("No completed sync with station counts yet.")
        else:
            long = counts.rename(columns={"online": "Online", "offline": "Offline"}).melt(
                id_vars=["when"],
                value_vars=["Online", "Offline"],
                var_name="status",
                value_name="stations",
            )
            chart = (
                alt.Chart(long)
                .mark_area(opacity=0.8, interpolate="monotone", line=True, point=True)
                .encode(
                    x=alt.X("when:T", title=f"Sync ({tz})", axis=TIME_AXIS),
                    y=alt.Y("stations:Q", stack=True, title="Stations"),
                    color=alt.Color(
                        "status:N",
                        scale=alt.Scale(
                            domain=["Online", "Offline"],
                            range=[_ui.STATION_COLORS["online"], _ui.STATION_COLORS["offline"]],
                        ),
                        legend=alt.Legend(orient="bottom", title=None),
                    ),
                    tooltip=[
                        alt.Tooltip("when:T", title="Sync", format="%Y-%m-%d %H:%M"),
                        alt.Tooltip("status:N", title="Status"),
                        alt.Tooltip("stations:Q", title="Stations", format=","),
                    ],
                )
            )
            st.altair_chart(chart, width="stretch", height=240)


# --- the runs table ---------------------------------------------------------


def runs_table(rt: Runtime, runs: list[RunRecord], logs: dict[str, SyncLog]) -> str | None:
    tz = rt.settings.timezone
    rows = []
    for run in runs:
        log = logs.get(run.id)
        mode = []
        if log is not None and log.dry_run:
            mode.append("dry run")
        if log is not None and log.delete_stale:
            mode.append("delete stale")
        rows.append(
            {
                "run": _ui.short_id(run.id),
                "status": [_ui.run_label(status_of(run, log))],
                "trigger": _ui.TRIGGER_LABELS.get(str(run.trigger), str(run.trigger)),
                "by": run.triggered_by or "—",
                "started": pd.Timestamp(run.started_at or run.created_at, unit="s", tz="UTC"),
                "duration": _ui.duration(run.duration_s) if run.duration_s is not None else (
                    "running" if run.status.active else "—"),
                "fetched": log.stations_fetched if log else None,
                "new": log.inserted if log else None,
                "updated": log.updated if log else None,
                "deleted": log.deleted if log else None,
                "skipped": log.skipped if log else None,
                "mode": ", ".join(mode),
            }
        )  # fmt: skip
    frame = pd.DataFrame(rows)
    picked = st.dataframe(
        frame,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="runs_table",
        height=min(420, 38 + 35 * len(frame)),
        column_config={
            "run": st.column_config.TextColumn("Run", width="small", help="Short run id"),
            "status": _ui.status_pill_column("Status", _ui.run_pill_colors(), width=190),
            "trigger": st.column_config.TextColumn("Trigger", width="small"),
            "by": st.column_config.TextColumn("Who", width="medium"),
            "started": st.column_config.DatetimeColumn("Started", format="distance", timezone=tz),
            "duration": st.column_config.TextColumn("Duration", width="small"),
            "fetched": st.column_config.NumberColumn("Fetched", format="localized", width="small"),
            "new": st.column_config.NumberColumn("New", format="localized", width="small"),
            "updated": st.column_config.NumberColumn("Updated", format="localized", width="small"),
            "deleted": st.column_config.NumberColumn("Deleted", format="localized", width="small"),
            "skipped": st.column_config.NumberColumn("Skipped", format="localized", width="small"),
            "mode": st.column_config.TextColumn("Options", width="small"),
        },
    )  # fmt: skip
    rows_picked = picked.selection.rows if picked else []
    if rows_picked:
        return runs[rows_picked[0]].id
    return None


# --- one run ----------------------------------------------------------------


def step_frame(detail: RunDetail, now: float) -> pd.DataFrame:
    rows = []
    for s in sorted(detail.steps, key=lambda s: s.seq):
        start = s.started_at or now
        end = s.ended_at or (now if str(s.status) in ("running", "waiting") else start)
        rows.append(
            {
                "seq": s.seq,
                "step": s.name,
                "status": str(s.status),
                "attempts": s.attempts,
                "start": start,
                "end": max(end, start + 0.05),
                "duration": _ui.duration(s.duration_s) if s.duration_s is not None else "—",
                "progress": s.progress_message
                or (
                    f"{s.progress_current or 0:,}/{s.progress_total:,}" if s.progress_total else ""
                ),
                "error": s.error or "",
                "errors": len(s.errors),
            }
        )
    return pd.DataFrame(rows)


def phases(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbered steps of one kind (fetch-bn-0000, fetch-bn-0001, ...) folded into one bar each,
    so a 100,000-station run's timeline stays readable."""
    kind = frame["step"].str.replace(r"-\d+$", "", regex=True)
    worst = {"failed": 0, "running": 1, "waiting": 2, "completed": 3}
    rows = []
    for name, part in frame.groupby(kind, sort=False):
        status = min(part["status"], key=lambda x: worst.get(x, 9))
        n = len(part)
        rows.append({
            "seq": int(part["seq"].min()), "step": f"{name} ×{n}" if n > 1 else str(part["step"].iloc[0]),
            "status": status, "attempts": int(part["attempts"].sum()), "start": part["start"].min(),
            "end": part["end"].max(), "duration": _ui.duration(float(part["end"].max() - part["start"].min())),
            "progress": str(part["progress"].iloc[-1]), "error": "; ".join(e for e in part["error"] if e)[:300],
        })  # fmt: skip
    return pd.DataFrame(rows)


def gantt(frame: pd.DataFrame, tz: str) -> None:
    data = frame.copy() if len(frame) <= 30 else phases(frame)
    for col in ("start", "end"):
        data[col] = (
            pd.to_datetime(data[col], unit="s", utc=True).dt.tz_convert(tz).dt.tz_localize(None)
        )
    order = list(data.sort_values("seq")["step"])
    data["label"] = data["status"].map(_ui.run_label)
    chart = (
        alt.Chart(data)
        .mark_bar(cornerRadius=3)
        .encode(
            x=alt.X(
                "start:T", title=f"Time ({tz})", axis=alt.Axis(format="%H:%M:%S", labelAngle=0)
            ),
            x2="end:T",
            y=alt.Y(
                "step:N",
                sort=order,
                title=None,
                axis=alt.Axis(labelLimit=220),
                scale=alt.Scale(paddingInner=0.25),
            ),
            color=alt.Color(
                "label:N",
                scale=color_scale(data["status"]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[
                alt.Tooltip("step:N", title="Step"),
                alt.Tooltip("label:N", title="Status"),
                alt.Tooltip("duration:N", title="Duration"),
                alt.Tooltip("attempts:Q", title="Attempts"),
                alt.Tooltip("progress:N", title="Progress"),
                alt.Tooltip("error:N", title="Error"),
            ],
        )
        .properties(height=alt.Step(22))
    )
    st.altair_chart(chart, width="stretch")


def steps_section(rt: Runtime, detail: RunDetail) -> None:
    if not detail.steps:
        st.caption("No step has run yet.")
        return
    frame = step_frame(detail, time.time())
    gantt(frame, rt.settings.timezone)
    table = frame[["step", "status", "attempts", "duration", "progress", "error"]].copy()
    table["status"] = table["status"].map(lambda s: [_ui.run_label(s)])
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "step": st.column_config.TextColumn("Step", width="medium"),
            "status": _ui.status_pill_column("Status", _ui.run_pill_colors(), width=120),
            "attempts": st.column_config.NumberColumn("Attempts", width="small"),
            "duration": st.column_config.TextColumn("Duration", width="small"),
            "progress": st.column_config.TextColumn("Progress", width="medium"),
            "error": st.column_config.TextColumn("Error", width="large"),
        },
    )
    tz = _ui.zone(rt)
    for s in sorted(detail.steps, key=lambda s: s.seq):
        if not s.errors:
            continue
        n = len(s.errors)
        with st.expander(
            f"`{s.name}`: {n} failed attempt{'s' if n != 1 else ''}", icon=":material/replay:"
        ):
            st.dataframe(
                pd.DataFrame(
                    [
                        {"attempt": e.get("attempt"), "error": str(e.get("error", "")),
                         "at": _ui.exact(e.get("at"), tz) if e.get("at") else "—"}
                        for e in s.errors
                    ]
                ),
                hide_index=True,
                column_config={"attempt": st.column_config.NumberColumn("Attempt", width="small"),
                               "error": st.column_config.TextColumn("Error", width="large"),
                               "at": st.column_config.TextColumn("When", width="medium")},
            )  # fmt: skip


def skipped_section(rt: Runtime, log: SyncLog | None) -> None:
    if log is None:
        st.caption("This run has no sync log.")
        return
    rows = _ui.attempt("read the skipped records", lambda: synclogs.skipped_records(rt.db, log.id))
    if rows is None:
        return
    if not rows:
        st.caption("Nothing was skipped.")
        return
    frame = pd.DataFrame(rows, columns=["serial", "reason"])
    frame["serial"] = frame["serial"].fillna("(no serial)")
    st.dataframe(
        frame,
        hide_index=True,
        column_config={"serial": st.column_config.TextColumn("Serial", width="medium"),
                       "reason": st.column_config.TextColumn("Why it was skipped", width="large")},
    )  # fmt: skip


def _change_text(before: Any, after: Any) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    changed = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    return "; ".join(f"{k}: {before.get(k)!s} → {after.get(k)!s}" for k in changed[:6])


def diff_section(rt: Runtime, log: SyncLog | None) -> None:
    if log is None:
        return
    rows = _ui.attempt("read the dry run's diff", lambda: synclogs.diff_rows(rt.db, log.id))
    if rows is None:
        return
    if not rows:
        st.caption("The dry run found nothing to change.")
        return
    frame = pd.DataFrame(
        [
            {
                "serial": r["serial"],
                "action": r["action"],
                "site": ((r.get("after") or r.get("before") or {}) or {}).get("site_name"),
                "changes": _change_text(r.get("before"), r.get("after")),
            }
            for r in rows
        ]
    )
    counts = frame["action"].value_counts()
    st.markdown(" · ".join(f"**{int(v):,}** {k}" for k, v in counts.items()))
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "serial": st.column_config.TextColumn("Serial", width="small"),
            "action": st.column_config.TextColumn("Would", width="small"),
            "site": st.column_config.TextColumn("Site", width="medium"),
            "changes": st.column_config.TextColumn("What would change", width="large"),
        },
    )


def actions(rt: Runtime, run: RunRecord, log: SyncLog | None) -> None:
    can_act = _ui.may_act(rt)
    needs_confirm = (
        log is not None and str(log.status) == "needs_confirmation" and run.status.active
    )
    row = st.container(horizontal=True)
    if run.status.active:
        row.button(
            "Cancel sync",
            key=f"cancel_{run.id}",
            icon=":material/stop_circle:",
            disabled=not can_act,
            on_click=_ui.action(
                "cancel a sync",
                "cancel the sync",
                lambda by: (
                    commands.cancel_sync(rt.engine, run.id, by),
                    f"Asked run `{_ui.short_id(run.id)}` to stop.",
                )[1],
            ),
        )
    if str(run.status) in RETRYABLE:

        def retry(by: str) -> str:
            result = commands.retry_sync(rt.engine, run.id, by)
            if result.started:
                st.session_state["history_pick"] = result.run_id
                st.query_params["run"] = result.run_id
                return (
                    f"Retrying from where run `{_ui.short_id(run.id)}` stopped: "
                    f"new run `{_ui.short_id(result.run_id)}`."
                )
            return result.message or "A sync is already running; not retrying now."

        row.button(
            "Retry",
            key=f"retry_{run.id}",
            icon=":material/replay:",
            disabled=not can_act,
            help="Start again from the step that failed; finished steps are not repeated.",
            on_click=_ui.action("retry a sync", "retry the sync", retry),
        )
    if needs_confirm and log is not None:
        with st.container(border=True):
            st.markdown(
                f":material/shield: **This sync wants to delete {log.delete_candidates:,} stations** that the portal "
                "no longer lists — more than the guard allows without a person's confirmation."
            )
            sure = st.checkbox(
                f"I have checked; delete {log.delete_candidates:,} stations",
                key=f"sure_{log.id}",
                disabled=not can_act,
            )
            a, b, _ = st.columns([1, 1, 2])
            a.button(
                "Confirm deletion",
                key=f"confirm_{log.id}",
                type="primary",
                icon=":material/delete:",
                disabled=not (can_act and sure),
                on_click=_ui.action(
                    "confirm deletions",
                    "confirm the deletion",
                    lambda by: (commands.confirm_delete(rt.engine, log.id, by, confirm=True),
                                "Deletion confirmed; the sync continues.")[1],
                ),
            )  # fmt: skip
            b.button(
                "Keep the stations",
                key=f"refuse_{log.id}",
                icon=":material/block:",
                disabled=not can_act,
                on_click=_ui.action(
                    "refuse deletions",
                    "refuse the deletion",
                    lambda by: (commands.confirm_delete(rt.engine, log.id, by, confirm=False),
                                "Deletion refused; the stations stay.")[1],
                ),
            )  # fmt: skip


def run_detail(rt: Runtime, run_id: str) -> bool:
    """Draw one run; returns whether it is still active."""
    try:
        detail = rt.engine.run_detail(run_id)
    except StationsyncError as exc:
        _ui.show_error(exc, "read the run")
        return False
    run = detail.run
    log = _ui.attempt("read the sync log", lambda: synclogs.sync_log_for_run(rt.db, run.id))
    tz = _ui.zone(rt)
    status = status_of(run, log)
    trigger = _ui.TRIGGER_LABELS.get(str(run.trigger), str(run.trigger))
    st.subheader(f"Run {_ui.short_id(run.id)} · {badge(status)}", anchor=False)
    extra = []
    if log is not None and log.dry_run:
        extra.append("dry run")
    if log is not None and log.delete_stale:
        extra.append("delete stale")
    if run.parent_run_id:
        extra.append(f"resumes run {_ui.short_id(run.parent_run_id)}")
    started_at = run.started_at or run.created_at
    st.caption(
        f"{trigger} by **{_ui.md_text(run.triggered_by) or '—'}** · started {_ui.ago(started_at)} · attempt {run.attempt}"
        + (f" · {', '.join(extra)}" if extra else ""),
        help=f"Run id `{run.id}`" + (f", sync id `{log.id}`" if log else ""),
    )
    m = st.columns(6)
    started = run.started_at or run.created_at
    m[0].metric("Duration", _ui.duration(run.duration_s) if run.duration_s is not None else
                _ui.duration(time.time() - started), border=True,
                help=f"Started {_ui.exact(started, tz)} ({_ui.exact_utc(started)})")  # fmt: skip
    if log is not None:
        m[1].metric("Fetched", f"{log.stations_fetched:,}", border=True,
                    help=f"{log.pages:,} pages, {log.retries:,} portal retries")  # fmt: skip
        m[2].metric("New", f"{log.inserted:,}", border=True)
        m[3].metric("Updated", f"{log.updated:,}", border=True, help=f"{log.unchanged:,} unchanged")
        m[4].metric("Deleted", f"{log.deleted:,}", border=True,
                    help=f"{log.missing:,} marked missing (no longer listed by the portal)")  # fmt: skip
        m[5].metric(
            "Skipped",
            f"{log.skipped:,}",
            border=True,
            help="Records the portal sent that could not be trusted",
        )
    actions(rt, run, log)
    if run.error:
        st.error(
            f"**{_ui.run_label(str(run.status))}:** {_ui.md_text(run.error)}",
            icon=":material/error:",
        )
    if log is not None and log.errors:
        with st.expander(
            f"Sync errors and warnings ({len(log.errors)})", expanded=str(run.status) != "completed"
        ):
            for e in log.errors:
                st.markdown(f"- {_ui.md_text(e)}")
    tabs = ["Steps", f"Skipped records ({log.skipped:,})" if log else "Skipped records"]
    if log is not None and log.dry_run:
        tabs.append("Dry-run diff")
    got = st.tabs(tabs)
    with got[0]:
        steps_section(rt, detail)
    with got[1]:
        skipped_section(rt, log)
    if len(got) > 2:
        with got[2]:
            diff_section(rt, log)
    return bool(run.status.active)


def main() -> None:
    rt = _ui.runtime()
    _ui.access_panel(rt)
    _ui.page_header(
        "Sync history", f"Every sync run, newest first. Times in {rt.settings.timezone}."
    )
    _ui.show_flash()
    runs = _ui.attempt(
        "read the runs", lambda: rt.engine.list_runs(function_id=_ui.SYNC_FUNCTION, limit=200)
    )
    if runs is None:
        return
    if not runs:
        st.info("**No sync has run yet.** Start one with **Sync Now** on the Base stations page.",
                icon=":material/inbox:")  # fmt: skip
        return
    logs = (
        _ui.attempt("read the sync logs", lambda: synclogs.list_sync_logs(rt.db, limit=500)) or []
    )
    by_run = logs_for(runs, logs)
    charts(rt, runs, by_run)
    st.markdown("#### Runs")
    picked = runs_table(rt, runs, by_run)
    wanted = picked or st.query_params.get("run") or runs[0].id
    if picked:
        st.query_params["run"] = picked
    st.divider()
    signature = (runs[0].id, str(runs[0].status))

    first_active = [r for r in runs if r.id == wanted and r.status.active]

    @st.fragment(run_every=_ui.poll_every(rt, bool(first_active)))
    def live_detail() -> None:
        try:
            newest = rt.engine.list_runs(function_id=_ui.SYNC_FUNCTION, limit=1)
        except StationsyncError as exc:
            _ui.show_error(exc, "read the runs")
            return
        if newest and (newest[0].id, str(newest[0].status)) != signature:
            st.rerun()  # a run started or finished: refresh the table and charts too
        run_detail(rt, wanted)

    live_detail()


main()
