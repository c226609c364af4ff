"""Schedules page: every function's triggers, next fires, last run; pause, resume, run now, edit cron.

The page only reads the scheduler's state and sends commands to it; the
process holding the scheduler lease applies an edit within one heartbeat.
"""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from core.engine import Function
from core.errors import StationsyncError
from core.runtime import Runtime
from core.scheduler import ScheduleInfo, next_fire_times
from pages import _ui


def lease_panel(rt: Runtime) -> None:
    lease = _ui.attempt("read the scheduler lease", rt.scheduler.lease)
    tz = _ui.zone(rt)
    now = time.time()
    if lease is None or lease.expires_at < now:
        st.warning(
            "**No process holds the scheduler lease right now**, so scheduled syncs will not fire "
            "until one takes it (within one lease period of a scheduler-enabled process starting).",
            icon=":material/warning:",
        )
    else:
        mine = " (this dashboard's process)" if lease.holder == rt.holder else ""
        st.markdown(
            f":material/verified: Scheduler lease held by **`{lease.holder}`**{mine} "
            f"since **{_ui.ago(lease.acquired_at, now)}**, renewed {_ui.ago(lease.renewed_at, now)}.",
            help=f"Held since {_ui.exact(lease.acquired_at, tz)} ({_ui.exact_utc(lease.acquired_at)}). "
            f"Expires {_ui.exact(lease.expires_at, tz)} unless renewed.",
        )
    if not rt.settings.scheduler:
        st.caption(
            ":material/info: This process does not schedule (`STATIONSYNC_SCHEDULER=false`); "
            "another process fires the schedules."
        )


def trigger_text(fn: Function | None, markdown: bool = True) -> str:
    if fn is None:
        return "—"
    q = "`" if markdown else ""
    parts = [f"cron {q}{c.expression}{q} ({c.timezone})" for c in fn.crons]
    parts += [f"event {q}{e}{q}" for e in fn.events if not e.startswith("cron/")]
    return ", ".join(parts) or "—"


def fires_table(fires: list[Any], tz_name: str, local_zone: ZoneInfo) -> pd.DataFrame:
    """Next fire times as a table: in words, local time, UTC (and the schedule's own
    zone when it differs from the dashboard's)."""
    rows = []
    now = time.time()
    for dt in fires:
        ts = dt.timestamp()
        row = {
            "When": _ui.ago(ts, now),
            "Local time": dt.astimezone(local_zone).strftime("%a %d %b %Y, %H:%M %Z"),
            "UTC": dt.astimezone(UTC).strftime("%a %d %b %Y, %H:%M UTC"),
        }
        if tz_name != local_zone.key:
            row[f"In {tz_name}"] = dt.strftime("%a %d %b %Y, %H:%M %Z")
        rows.append(row)
    return pd.DataFrame(rows)


def cron_editor(rt: Runtime, info: ScheduleInfo, can_act: bool) -> None:
    key = f"cron_{info.job_id}"
    st.session_state.setdefault(key, info.cron)
    typed = st.text_input(
        "Cron expression",
        key=key,
        help="Five fields: minute hour day-of-month month day-of-week, in the schedule's time zone. "
        "Press Enter to preview.",
        placeholder="0 0 * * *",
    )
    typed_norm = " ".join(typed.split())
    valid = False
    try:
        preview = next_fire_times(typed_norm, info.timezone, 5)
        valid = True
    except StationsyncError as exc:
        st.error(_ui.md_text(exc), icon=":material/error:")
        preview = []
    if valid and typed_norm != info.cron:
        words = _ui.describe_cron(typed_norm)
        st.caption(f"Preview of `{typed_norm}`" + (f" — {words}" if words else "") + ":")
        st.dataframe(fires_table(preview, info.timezone, _ui.zone(rt)), hide_index=True)

    def save(by: str) -> str:
        fires = rt.scheduler.set_cron(info.job_id, typed_norm, by)
        first = _ui.exact(fires[0].timestamp(), _ui.zone(rt)) if fires else "never"
        return f"Schedule of **{info.function_name}** is now `{typed_norm}`; next fire {first}."

    st.button(
        "Save schedule",
        key=f"save_{info.job_id}",
        icon=":material/save:",
        disabled=not valid or typed_norm == info.cron or not can_act,
        on_click=_ui.action("edit schedules", "save the schedule", save),
    )


def schedule_card(rt: Runtime, info: ScheduleInfo, can_act: bool) -> None:
    fn = rt.registry.functions.get(info.function_id)
    tz = _ui.zone(rt)
    with st.container(border=True):
        head, state = st.columns([4, 1])
        words = _ui.describe_cron(info.cron)
        head.subheader(info.function_name, anchor=False)
        head.markdown(
            f"`{info.cron}` · {info.timezone}" + (f" · {words}" if words else ""),
            help=f"Schedule id `{info.job_id}`",
        )
        if info.paused:
            state.markdown(":orange-badge[:material/pause: Paused]")
        else:
            state.markdown(":green-badge[:material/play_arrow: Active]")

        left, right = st.columns([3, 2], gap="large")
        with left:
            st.markdown("**Next fire times**")
            if info.paused:
                st.caption("Paused: nothing will fire until it is resumed.")
            elif info.next_fires:
                st.dataframe(fires_table(info.next_fires, info.timezone, tz), hide_index=True)
            else:
                st.caption("This expression never fires again.")
        with right:
            st.markdown("**Triggers**")
            st.markdown(trigger_text(fn))
            st.markdown("**Last run**")
            runs = _ui.attempt(
                "read the last run",
                lambda: rt.engine.list_runs(function_id=info.function_id, limit=1),
            )
            if runs:
                run = runs[0]
                st.markdown(
                    f"{_ui.run_badge(run.status)} · {_ui.TRIGGER_LABELS.get(run.trigger, run.trigger)} "
                    f"by {_ui.md_text(run.triggered_by) or '—'} · {_ui.ago(run.created_at)}",
                    help=f"Run `{_ui.short_id(run.id)}` created {_ui.exact(run.created_at, tz)}",
                )
            elif runs is not None:
                st.caption("Never run yet.")
            if info.updated_by and info.updated_by != "default":
                st.caption(
                    f"Schedule last changed by {_ui.md_text(info.updated_by)} {_ui.ago(info.updated_at)}",
                    help=_ui.exact(info.updated_at, tz),
                )
            else:
                st.caption("Schedule as set in the code (not edited here yet).")

        buttons = st.container(horizontal=True)
        b1 = b2 = buttons

        def resume(by: str) -> str:
            rt.scheduler.resume(info.job_id, by)
            return f"Resumed **{info.function_name}**."

        def pause(by: str) -> str:
            rt.scheduler.pause(info.job_id, by)
            return f"Paused **{info.function_name}**."

        if info.paused:
            b1.button(
                "Resume",
                key=f"resume_{info.job_id}",
                icon=":material/play_arrow:",
                disabled=not can_act,
                on_click=_ui.action("resume schedules", "resume the schedule", resume),
            )
        else:
            b1.button(
                "Pause",
                key=f"pause_{info.job_id}",
                icon=":material/pause:",
                disabled=not can_act,
                on_click=_ui.action("pause schedules", "pause the schedule", pause),
            )

        def run_now(by: str) -> str:
            result = rt.scheduler.run_now(info.job_id, by)
            if result.started:
                return f"Started **{info.function_name}** (run `{_ui.short_id(result.run_id)}`)."
            return (
                f"**{info.function_name}** is already running (run `{_ui.short_id(result.run_id)}`); "
                "not starting a second one."
            )

        b2.button(
            "Run now",
            key=f"run_{info.job_id}",
            icon=":material/bolt:",
            disabled=not can_act,
            on_click=_ui.action("run schedules now", "start the run", run_now),
        )
        with st.expander("Edit schedule", icon=":material/edit:"):
            cron_editor(rt, info, can_act)


def unscheduled(rt: Runtime, scheduled: set[str]) -> None:
    rows = [
        {"Function": fn.title, "Triggers": trigger_text(fn, markdown=False), "Retries": fn.retries}
        for fn in rt.registry
        if fn.id not in scheduled
    ]
    if rows:
        st.subheader("Event-only functions", anchor=False)
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def main() -> None:
    rt = _ui.runtime()
    _ui.access_panel(rt)
    _ui.page_header("Schedules", f"Times shown in {rt.settings.timezone} and UTC.")
    _ui.show_flash()
    can_act = _ui.may_act(rt)

    @st.fragment(run_every=_ui.poll_every(rt, active=False))
    def live_lease() -> None:
        lease_panel(rt)

    live_lease()
    infos = _ui.attempt("read the schedules", rt.scheduler.schedules)
    if infos is None:
        return
    if not infos:
        st.info("No scheduled functions are registered.", icon=":material/info:")
    for info in infos:
        schedule_card(rt, info, can_act)
    unscheduled(rt, {i.function_id for i in infos})


main()
