"""The Sync Now control and the live view of a sync run, followed by its run id.

``sync_control`` draws the button (disabled while any sync is active, or when
the user may not act) and, when a run is active, a fragment that re-reads that
run every ``ui_poll_active_s`` and shows each step with its own progress. When
idle, the same fragment looks every ``ui_poll_idle_s`` for a run someone else
started (the schedule, another user, another replica). Whenever the active run
changes, it reruns the whole page, so the button, numbers and table refresh.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.engine import RunDetail, RunRecord, StepRecord
from core.errors import StationsyncError
from core.runtime import Runtime
from core.sync import commands
from jobstore import synclogs
from pages import _ui

FOLLOW = "sync_follow_run"
SHOWN = "sync_shown_run"
OPT_DRY = "sync_opt_dry_run"
OPT_STALE = "sync_opt_delete_stale"

STEP_ICONS = {
    "completed": ":green[:material/check_circle:]",
    "failed": ":red[:material/error:]",
    "running": ":blue[:material/progress_activity:]",
    "waiting": ":orange[:material/hourglass_top:]",
}


def _start(rt: Runtime) -> Any:
    def start(by: str) -> str | None:
        req = commands.request_sync(
            rt.engine,
            dry_run=bool(st.session_state.get(OPT_DRY, False)),
            delete_stale=bool(st.session_state.get(OPT_STALE, False)),
            by=by,
        )
        if req.run_id:
            st.session_state[FOLLOW] = req.run_id
        if req.started:
            return None  # the live progress says it all
        try:
            heading = run_heading(rt.engine.get_run(req.run_id))
        except StationsyncError:
            heading = f"run `{_ui.short_id(req.run_id)}`"
        _ui.flash(
            "info",
            f"A sync is already running ({heading}), so no second one was started. Following it.",
        )
        return None

    return _ui.action("start a sync", "start the sync", start)


def step_line(step: StepRecord) -> str:
    icon = STEP_ICONS.get(str(step.status), "•")
    parts = [f"{icon} `{step.name}`"]
    if step.progress_message:
        parts.append(step.progress_message)
    elif step.progress_total:
        parts.append(f"{step.progress_current or 0:,}/{step.progress_total:,}")
    if step.attempts and step.attempts > 1:
        parts.append(f"attempt {step.attempts}")
    if step.duration_s is not None:
        parts.append(_ui.duration(step.duration_s))
    if str(step.status) == "failed" and step.error:
        parts.append(f"**{_ui.md_text(step.error)}**")
    return " · ".join(parts)


def run_heading(run: RunRecord) -> str:
    trigger = _ui.TRIGGER_LABELS.get(str(run.trigger), str(run.trigger))
    who = _ui.md_text(run.triggered_by) or "—"
    return f"{trigger} sync by {who}, started {_ui.ago(run.started_at or run.created_at)} · run `{_ui.short_id(run.id)}`"


def show_steps(detail: RunDetail, keep: int = 4) -> None:
    """Each step with its own progress; long runs fold their finished steps into one line."""
    steps = sorted(detail.steps, key=lambda s: s.seq)
    if not steps:
        st.caption("Waiting for a worker to pick the run up…")
        return
    done = [s for s in steps if str(s.status) == "completed"]
    folded = done[:-keep] if len(steps) > keep + 4 else []
    if folded:
        st.markdown(
            f":green[:material/check_circle:] {len(folded)} earlier steps done "
            f"(`{folded[0].name}` … `{folded[-1].name}`)"
        )
    hidden = {s.name for s in folded}
    for step in steps:
        if step.name in hidden:
            continue
        status = str(step.status)
        if status == "running" and step.progress_total:
            frac = min(1.0, max(0.0, (step.progress_current or 0) / step.progress_total))
            message = (
                step.progress_message or f"{step.progress_current or 0:,}/{step.progress_total:,}"
            )
            st.progress(frac, text=f"`{step.name}` · {message}")
        else:
            st.markdown(step_line(step))


def live_run(rt: Runtime, run_id: str) -> None:
    """The followed run, as it is now in the database."""
    try:
        detail = rt.engine.run_detail(run_id)
    except StationsyncError as exc:
        _ui.show_error(exc, "read the running sync")
        return
    run = detail.run
    log = _ui.attempt("read the sync log", lambda: synclogs.sync_log_for_run(rt.db, run_id))
    waiting = log is not None and str(log.status) == "needs_confirmation"
    with st.container(border=True, key="sync_live"):
        if waiting:
            st.markdown(
                f":orange[:material/shield:] **Waiting for confirmation** — {run_heading(run)}"
            )
        else:
            st.markdown(f":blue[:material/sync:] **Sync running** — {run_heading(run)}")
        if waiting and log is not None:
            st.warning(
                f"This sync would delete **{log.delete_candidates:,}** stations, more than the guard allows. "
                "An administrator must confirm it on Sync history.",
                icon=":material/shield:",
            )
            st.page_link(
                "pages/history.py",
                label="Review and confirm",
                icon=":material/shield:",
                query_params={"run": run.id},
            )
        if log is not None and log.stations_fetched:
            st.caption(f"{log.stations_fetched:,} stations fetched so far")
        show_steps(detail)


def finished_banner(rt: Runtime, run_id: str) -> None:
    """How the followed run ended; stays until dismissed or the next sync."""
    try:
        detail = rt.engine.run_detail(run_id)
    except StationsyncError as exc:
        _ui.show_error(exc, "read the finished sync")
        return
    run = detail.run
    log = _ui.attempt("read the sync log", lambda: synclogs.sync_log_for_run(rt.db, run_id))
    took = _ui.duration(run.duration_s)
    counts = ""
    if log is not None:
        counts = (
            f"{log.stations_fetched:,} fetched, {log.inserted:,} new, {log.updated:,} updated, "
            f"{log.deleted:,} deleted, {log.skipped:,} skipped"
        )
        if log.dry_run:
            counts += " — dry run, nothing written"
    status = str(run.status)
    if status == "completed":
        box = st.success
        text = f"**Sync completed** in {took}. {counts}"
        icon = ":material/check_circle:"
    elif status == "cancelled":
        box = st.info
        text = f"**Sync cancelled** ({_ui.md_text(run.error) or 'by request'})."
        icon = ":material/cancel:"
    else:
        box = st.error
        text = f"**Sync {_ui.run_label(status).lower()}** after {took}: {_ui.md_text(run.error) or 'no error recorded'}"
        icon = ":material/error:"
    with st.container():
        box(text, icon=icon)
        a, b, _ = st.columns([1, 1, 4], vertical_alignment="center")
        a.page_link(
            "pages/history.py",
            label="Run details",
            icon=":material/history:",
            query_params={"run": run.id},
        )
        if b.button("Dismiss", key="sync_dismiss", type="tertiary"):
            st.session_state.pop(SHOWN, None)
            st.rerun()


def sync_control(rt: Runtime, button_area: Any) -> str | None:
    """Draw the button and the live view; returns the id of a finished run whose outcome
    banner is showing (so the page need not repeat it)."""
    try:
        active = rt.engine.active_run(_ui.SYNC_FUNCTION)
    except StationsyncError as exc:
        _ui.show_error(exc, "check for a running sync")
        return None
    active_id = active.id if active else None
    followed = st.session_state.get(FOLLOW)
    if active is not None and followed != active_id:
        if followed is None:
            st.info(
                f"A sync is already running ({run_heading(active)}). Following it.",
                icon=":material/sync:",
            )
        st.session_state[FOLLOW] = followed = active_id
    if not active_id and followed:
        # The followed run ended since the last render: show how, once.
        st.session_state[SHOWN] = followed
        st.session_state.pop(FOLLOW, None)
        followed = None

    can_act = _ui.may_act(rt)
    with button_area:
        c1, c2 = st.columns([1, 1], vertical_alignment="bottom")
        with c2.popover("Options", icon=":material/tune:", width="stretch"):
            st.checkbox(
                "Dry run",
                key=OPT_DRY,
                help="Fetch and compare, write nothing; the diff is kept for review.",
            )
            st.checkbox(
                "Delete stale stations",
                key=OPT_STALE,
                help="Remove stations the portal no longer lists. A large deletion waits for an "
                "administrator to confirm it on Sync history.",
            )
        c1.button(
            "Sync running…" if active_id else "Sync Now",
            key="sync_now",
            type="primary",
            icon=":material/sync:",
            disabled=bool(active_id) or not can_act,
            width="stretch",
            on_click=_start(rt),
            help=None if can_act else "Sign in as an administrator to start a sync.",
        )
        opts = [
            n
            for n, k in (("dry run", OPT_DRY), ("delete stale", OPT_STALE))
            if st.session_state.get(k)
        ]
        if opts:
            st.caption("Next sync: " + ", ".join(opts))

    @st.fragment(run_every=_ui.poll_every(rt, active_id is not None))
    def live() -> None:
        try:
            now = rt.engine.active_run(_ui.SYNC_FUNCTION)
        except StationsyncError as exc:
            _ui.show_error(exc, "check for a running sync")
            return
        if (now.id if now else None) != active_id:
            st.rerun()  # a run started or ended: redraw the whole page
        if active_id:
            live_run(rt, active_id)

    live()
    shown = st.session_state.get(SHOWN)
    if shown and not active_id:
        finished_banner(rt, shown)
        return str(shown)
    return None
