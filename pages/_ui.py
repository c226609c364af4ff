"""Shared dashboard pieces: the runtime accessor, the action guard, colours, times and errors.

Every page reaches the process's runtime through ``runtime()``, which turns a
start-up failure (bad setting, unreachable database) into one clear message
instead of a traceback. Every action goes through ``act()``, which asks
``core.access`` at the moment the action runs on the server. Status colours
live here once so the table, the map legend and the history agree.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

from core import access
from core.errors import (
    AccessDeniedError,
    SettingsError,
    StationsyncError,
    StorageError,
    TaranaError,
)

if TYPE_CHECKING:
    from core.runtime import Runtime

T = TypeVar("T")

SYNC_FUNCTION = "tarana-sync"

# Station status -> colour. The same hex values feed the map (as RGB), its legend,
# the table's status pills and the charts; the theme's green/red/grey match them.
STATION_COLORS: dict[str, str] = {
    "online": "#1e9e5a",
    "offline": "#d1344b",
    "unknown": "#7b8794",
}
GREEN, RED, BLUE, ORANGE, GRAY = "#1e9e5a", "#d1344b", "#1f5fbf", "#e08a1e", "#7b8794"

# Run status -> (colour, theme colour name, material icon, label).
RUN_STYLE: dict[str, tuple[str, str, str, str]] = {
    "completed": (GREEN, "green", "check_circle", "Completed"),
    "completed_with_warnings": (ORANGE, "orange", "warning", "Completed with warnings"),
    "needs_confirmation": (ORANGE, "orange", "shield", "Needs confirmation"),
    "failed": (RED, "red", "error", "Failed"),
    "dead": (RED, "red", "error", "Died"),
    "timed_out": (RED, "red", "timer_off", "Timed out"),
    "cancelled": (GRAY, "gray", "cancel", "Cancelled"),
    "running": (BLUE, "blue", "progress_activity", "Running"),
    "queued": (BLUE, "blue", "schedule", "Queued"),
    "waiting": (ORANGE, "orange", "hourglass_top", "Waiting"),
}
TRIGGER_LABELS: dict[str, str] = {
    "cron": "Scheduled",
    "manual": "Manual",
    "retry": "Retry",
    "rerun": "Re-run",
    "event": "Event",
}


def rgb(hex_color: str, alpha: int = 255) -> list[int]:
    h = hex_color.lstrip("#")
    return [int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha]


def _style(status: str) -> tuple[str, str, str, str]:
    return RUN_STYLE.get(status, (GRAY, "gray", "help", status.replace("_", " ").capitalize()))


def run_label(status: str) -> str:
    return _style(str(status))[3]


def run_badge(status: str) -> str:
    """Markdown: a coloured icon and the status's name."""
    _, name, icon, label = _style(str(status))
    return f":{name}[:material/{icon}:] {label}"


def status_pill_column(label: str, statuses: dict[str, str], **kw: Any) -> Any:
    """A read-only table column that shows each status as a coloured pill (values are lists)."""
    return st.column_config.MultiselectColumn(
        label, options=list(statuses), color=list(statuses.values()), **kw
    )


def run_pill_colors() -> dict[str, str]:
    return {v[3]: v[0] for v in RUN_STYLE.values()}


def station_label(status: str | None) -> str:
    return (status or "unknown").lower().capitalize()


def station_badge(status: str | None) -> str:
    key = (status or "unknown").lower()
    name = {"online": "green", "offline": "red"}.get(key, "gray")
    return f":{name}[●] {key.capitalize()}"


# --- errors -----------------------------------------------------------------


def advice(exc: BaseException) -> str:
    """What the operator can do about an error, in one sentence."""
    if isinstance(exc, AccessDeniedError):
        return ""
    if isinstance(exc, SettingsError):
        return "Fix that setting in the environment or `.streamlit/secrets.toml`, then restart the dashboard."
    if isinstance(exc, StorageError):
        return (
            "Check that the database server is running and reachable with the configured "
            "`STATIONSYNC_DATABASE_URL`, then reload this page."
        )
    if isinstance(exc, TaranaError):
        return (
            "The vendor portal did not answer as expected. Check its status and the portal "
            "credentials; the next scheduled sync will try again."
        )
    return "Reload the page. If it keeps happening, the dashboard's log has the details."


def show_error(exc: BaseException, doing: str) -> None:
    """One clear message: what failed, why, and what to do next. Never a traceback."""
    if isinstance(exc, AccessDeniedError):
        st.warning(md_text(exc), icon=":material/lock:")
        return
    tip = advice(exc)
    st.error(
        f"**Could not {doing}.** {md_text(exc)}" + (f"\n\n{tip}" if tip else ""),
        icon=":material/error:",
    )


def attempt(doing: str, fn: Callable[[], T]) -> T | None:
    """``fn()``, or None after showing a clear message if it failed."""
    try:
        return fn()
    except StationsyncError as exc:
        show_error(exc, doing)
        return None


def runtime() -> Runtime:
    """The process's runtime; stops the page with a clear message if it cannot start."""
    from core.runtime import get_runtime

    try:
        return get_runtime()
    except StationsyncError as exc:
        show_error(exc, "start Stationsync")
        st.stop()
        raise  # unreachable: st.stop() raises


# --- access -----------------------------------------------------------------


def current_user() -> tuple[str | None, bool]:
    """(e-mail, signed in) from Streamlit's built-in authentication, if configured."""
    try:
        logged_in = bool(st.user.get("is_logged_in", False))
        email = st.user.get("email") if logged_in else None
    except Exception:  # noqa: BLE001 - no auth configured, or not in a session
        return None, False
    return (str(email) if email else None), logged_in


def act(action: str) -> str:
    """The guard every action calls: who is acting, or AccessDeniedError."""
    from core.runtime import get_runtime

    email, logged_in = current_user()
    return access.require(get_runtime().settings.admins, email, logged_in, action)


FLASH_S = 20.0


def flash(kind: str, message: str) -> None:
    """Leave a message for the next renders (callbacks run before the page draws). It stays
    for ``FLASH_S`` seconds, so a rerun the live view triggers right after does not eat it."""
    st.session_state.setdefault("_flash", []).append((kind, message, time.monotonic()))


def show_flash() -> None:
    now = time.monotonic()
    kept = [f for f in st.session_state.get("_flash", []) if now - f[2] < FLASH_S]
    st.session_state["_flash"] = kept
    for kind, message, _ in kept:
        if kind == "success":
            st.success(message, icon=":material/check_circle:")
        elif kind == "info":
            st.info(message, icon=":material/info:")
        elif kind == "denied":
            st.warning(message, icon=":material/lock:")
        else:
            st.error(message, icon=":material/error:")


def action(what: str, doing: str, fn: Callable[[str], str | None]) -> Callable[[], None]:
    """A button callback: check access now, run ``fn(by)``, report the outcome.

    ``what`` completes "Sign in as an administrator to ...". ``fn`` gets the
    actor's name and returns a success message (or None for no message).
    """

    def callback() -> None:
        st.session_state["_flash"] = []  # a new action replaces the last one's message
        try:
            by = act(what)
            message = fn(by)
        except AccessDeniedError as exc:
            flash("denied", md_text(exc))
        except StationsyncError as exc:
            tip = advice(exc)
            flash("error", f"**Could not {doing}.** {md_text(exc)}" + (f"\n\n{tip}" if tip else ""))
        else:
            if message:
                flash("success", message)

    return callback


def may_act(rt: Runtime) -> bool:
    email, logged_in = current_user()
    return access.can_act(rt.settings.admins, email, logged_in)


def access_panel(rt: Runtime) -> None:
    """Sidebar block: who you are and whether you may act."""
    admins = rt.settings.admins
    email, logged_in = current_user()
    with st.sidebar:
        if not access.restricted(admins):
            st.caption(
                ":material/lock_open: Actions are open to everyone and recorded as "
                f"**{md_text(access.actor(admins, email, logged_in))}**."
            )
            return
        if logged_in:
            role = "administrator" if access.can_act(admins, email, logged_in) else "read only"
            st.caption(f":material/person: Signed in as **{md_text(email)}** ({role}).")
            if st.button("Sign out", key="_sign_out", icon=":material/logout:"):
                st.logout()
        else:
            st.caption(":material/lock: Viewing is open; actions need an administrator.")
            if st.button("Sign in", key="_sign_in", icon=":material/login:", type="primary"):
                try:
                    st.login()
                except Exception as exc:  # noqa: BLE001 - sign-in not configured
                    st.error(
                        "Sign-in is not configured. Add an `[auth]` section (OIDC provider) to "
                        f"`.streamlit/secrets.toml`. ({type(exc).__name__})"
                    )


# --- time -------------------------------------------------------------------


def zone(rt: Runtime) -> ZoneInfo:
    return ZoneInfo(rt.settings.timezone)


def local_dt(ts: float | None, tz: ZoneInfo) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).astimezone(tz)


def exact(ts: float | None, tz: ZoneInfo) -> str:
    """Exact local time, e.g. '2026-11-23 10:52:03 SAST'."""
    dt = local_dt(ts, tz)
    return "—" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S %Z")


def exact_utc(ts: float | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float | None, now: float | None = None) -> str:
    """Human distance from now: 'just now', '5 minutes ago', 'in 3 hours'."""
    if ts is None:
        return "never"
    now = datetime.now(UTC).timestamp() if now is None else now
    delta = now - ts
    future = delta < 0
    s = abs(delta)
    if s < 45:
        return "in a few seconds" if future else "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size * 0.95 or unit == "minute":
            n = max(1, round(s / size))
            text = f"{n} {unit}{'' if n == 1 else 's'}"
            return f"in {text}" if future else f"{text} ago"
    return ""  # pragma: no cover


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def short_id(run_id: str | None) -> str:
    return (run_id or "")[:8]


def poll_every(rt: Runtime, active: bool) -> float:
    """Live views re-read the database fast while a run is active, slowly otherwise."""
    return rt.settings.ui_poll_active_s if active else rt.settings.ui_poll_idle_s


# --- text safety ------------------------------------------------------------


def md_text(value: Any) -> str:
    """Portal or user text placed inside Markdown: no link, image or colour directive can form."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def escape_html(value: Any) -> str:
    """Text that renders as itself inside an HTML template, braces included."""
    text = "" if value is None else str(value)
    return html.escape(text, quote=True).replace("{", "&#123;").replace("}", "&#125;")


def page_header(title: str, caption: str | None = None) -> None:
    st.title(title)
    if caption:
        st.caption(caption)


def describe_cron(expression: str) -> str | None:
    """Plain words for common cron shapes ('Every day at 00:00'); None if unusual."""
    parts = expression.split()
    if len(parts) != 5:
        return None
    minute, hour, dom, month, dow = parts
    if dom != "*" or month != "*":
        return None
    days = "" if dow == "*" else f" on {dow}"
    if minute == "*" and hour == "*":
        return f"Every minute{days}"
    if minute.startswith("*/") and hour == "*" and minute[2:].isdigit():
        return f"Every {int(minute[2:])} minutes{days}"
    if minute.isdigit() and hour == "*":
        return f"Every hour at minute {int(minute)}{days}"
    if minute.isdigit() and hour.isdigit():
        return (
            f"Every day at {int(hour):02d}:{int(minute):02d}{days}"
            if not days
            else (f"At {int(hour):02d}:{int(minute):02d}{days}")
        )
    return None


# --- stations: filtering in memory, CSV export ---------------------------------


def filter_frame(frame: pd.DataFrame, flt: Any) -> pd.DataFrame:
    """The rows matching a StationFilter, with query_stations' meaning: ``search`` is a
    case-insensitive literal substring of site, hostname or serial; empty fields match all."""
    mask = pd.Series(True, index=frame.index)
    if flt.search:
        needle = flt.search.lower()
        hit = pd.Series(False, index=frame.index)
        for col in ("site_name", "hostname", "serial_number"):
            hit |= frame[col].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
        mask &= hit
    if flt.markets:
        mask &= frame["market"].isin(list(flt.markets))
    if flt.statuses:
        mask &= frame["device_status"].isin(list(flt.statuses))
    if flt.min_connections > 0:
        mask &= frame["active_connections"] >= flt.min_connections
    return frame if bool(mask.all()) else frame[mask]


EXPORT_COLUMNS: dict[str, str] = {
    "serial_number": "serial_number",
    "hostname": "hostname",
    "site_name": "site_name",
    "market": "market",
    "region": "region",
    "device_status": "status",
    "active_connections": "active_connections",
    "lat": "lat",
    "lng": "lng",
    "band": "band",
    "height_m": "height_m",
    "azimuth_deg": "azimuth_deg",
    "last_seen": "last_seen",
    "missing_since": "missing_since",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_bytes(frame: Any, tz_name: str) -> bytes:
    """The rows as UTF-8 CSV (with BOM for spreadsheets), text cells formula-safe,
    times as ISO local time."""
    import pandas as pd

    out = frame[[c for c in EXPORT_COLUMNS if c in frame.columns]].rename(columns=EXPORT_COLUMNS)
    for col in ("last_seen", "missing_since"):
        if col in out.columns:
            times = pd.to_datetime(out[col], unit="s", utc=True).dt.tz_convert(tz_name)
            out[col] = (
                times.dt.strftime("%Y-%m-%dT%H:%M:%S%z").astype(object).where(times.notna(), "")
            )
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].astype(object).map(spreadsheet_safe)
    # CRLF rows make the writer quote any cell holding a CR or LF, so a name
    # cannot end a row early and start the next one with a formula.
    text: str = out.to_csv(index=False, lineterminator="\r\n")
    return text.encode("utf-8-sig")
