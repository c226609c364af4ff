"""With an admin list, nobody else can start, cancel, retry, confirm, refuse or edit anything.

The guard (``core.access.require``) is tested directly, then through the real
pages under AppTest with the app's runtime: an anonymous visitor sees every
action disabled with the reason, and a forged click on a disabled button is
dropped; a page drawn for an admin whose session then belongs to someone else
(signed out, or another account) still refuses at the moment the action runs.
In every case the database proves nothing reached the engine: no run, no
event, no cancel request, no schedule change. An admin's own click is the
control that shows the clicks are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from core import access
from core.errors import AccessDeniedError
from core.runtime import Runtime
from core.sync import commands
from core.sync.events import DELETE_CONFIRMED
from jobstore import synclogs
from jobstore.synclogs import SyncStatus
from tests.security.conftest import ANONYMOUS, messages, page_text, render

ADMIN = "ops@example.com"
ADMINS = (ADMIN,)
AS_ADMIN: dict[str, Any] = {"is_logged_in": True, "email": ADMIN}
INTRUDER: dict[str, Any] = {"is_logged_in": True, "email": "intruder@example.com"}
JOB = "tarana-sync:cron:0"
ACTIONS = (
    "start a sync", "cancel a sync", "retry a sync", "confirm deletions", "refuse deletions",
    "edit schedules", "pause schedules", "resume schedules", "run schedules now",
)  # fmt: skip


# --- the guard itself ---------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    ("email", "logged_in"),
    [
        (None, False),
        (ADMIN, False),  # an e-mail without a sign-in proves nothing
        ("intruder@example.com", True),
        ("", True),
        ("ops@example.com.evil.test", True),
        ("ops@example.com,intruder@example.com", True),
        ("ops@example.com\x00", True),
        ("%", True),
    ],
)
def test_the_guard_refuses_everyone_but_an_admin(
    action: str, email: str | None, logged_in: bool
) -> None:
    assert not access.can_act(ADMINS, email, logged_in)
    with pytest.raises(AccessDeniedError) as info:
        access.require(ADMINS, email, logged_in, action)
    text = str(info.value)
    assert "administrator" in text and action in text


@pytest.mark.parametrize("email", [ADMIN, "OPS@Example.com", "  ops@example.com "])
def test_the_guard_lets_a_signed_in_admin_act_under_their_name(email: str) -> None:
    assert access.require(ADMINS, email, True, "start a sync") == ADMIN


# --- through the pages -------------------------------------------------------


def forge(widget: Any) -> None:
    """What a crafted websocket message does: set a widget whatever the page drew."""
    widget._value = True


def state(rt: Runtime) -> dict[str, Any]:
    """What the engine and scheduler hold: runs, events, schedules."""
    runs = rt.engine.list_runs(limit=100)
    return {
        "runs": sorted((r.id, str(r.status), r.attempt) for r in runs),
        "cancel": sorted(r.id for r in runs if r.cancel_requested),
        "events": sorted(e.id for e in rt.engine.list_events(limit=100)),
        "schedules": [(s.job_id, s.cron, s.paused, s.updated_by) for s in rt.scheduler.schedules()],
    }


def two_runs(rt: Runtime) -> tuple[str, str, str]:
    """A cancelled run (retryable) and an active one whose sync waits for a delete confirmation."""
    first = commands.request_sync(rt.engine, by=ADMIN)
    assert rt.engine.cancel(first.run_id, ADMIN)
    second = commands.request_sync(rt.engine, delete_stale=True, by=ADMIN)
    assert second.started
    synclogs.create_log(
        rt.db,
        {
            "id": second.sync_id, "run_id": second.run_id, "trigger_type": "manual",
            "status": SyncStatus.NEEDS_CONFIRMATION.value, "triggered_by": ADMIN,
            "dry_run": False, "delete_stale": True, "attempt": 1, "started_at": time.time(),
            "errors": "[]", "needs_confirmation": True, "delete_candidates": 50,
        },
    )  # fmt: skip
    return first.run_id, second.run_id, second.sync_id


@pytest.fixture
def restricted(app_runtime: Callable[..., Runtime]) -> Runtime:
    return app_runtime(ADMINS=ADMIN)


def _buttons(at: AppTest, *keys: str) -> list[Any]:
    return [at.button(key=k) for k in keys]


def test_anonymous_visitors_see_disabled_actions_and_forged_clicks_do_nothing(
    restricted: Runtime,
) -> None:
    rt = restricted
    cancelled, active, sync_id = two_runs(rt)
    before = state(rt)

    at = render("stations.py")
    sync_now = at.button(key="sync_now")
    assert sync_now.disabled and "administrator" in (sync_now.help or "")
    assert "actions need an administrator" in page_text(at)
    forge(sync_now)
    at.run()

    at = render("history.py", query={"run": active})
    buttons = _buttons(at, f"cancel_{active}", f"confirm_{sync_id}", f"refuse_{sync_id}")
    sure = at.checkbox(key=f"sure_{sync_id}")
    assert all(b.disabled for b in buttons) and sure.disabled
    for widget in (*buttons, sure):
        forge(widget)
    at.run()

    at = render("history.py", query={"run": cancelled})
    retry = at.button(key=f"retry_{cancelled}")
    assert retry.disabled
    forge(retry)
    at.run()

    at = render("schedules.py")
    buttons = _buttons(at, f"pause_{JOB}", f"run_{JOB}", f"save_{JOB}")
    assert all(b.disabled for b in buttons)
    at.text_input(key=f"cron_{JOB}").set_value("*/5 * * * *")
    for widget in buttons:
        forge(widget)
    at.run()
    assert not at.exception

    assert state(rt) == before, "an anonymous visitor changed something"
    assert not rt.engine.list_events(DELETE_CONFIRMED)


@pytest.mark.parametrize("who", [ANONYMOUS, INTRUDER], ids=["signed-out", "not-an-admin"])
def test_a_page_drawn_for_an_admin_refuses_once_the_session_is_someone_else(
    restricted: Runtime, who: dict[str, Any]
) -> None:
    rt = restricted
    refusal = (
        "Sign in as an administrator" if not who["is_logged_in"] else "is not an administrator"
    )

    def attempt(at: AppTest, click: Callable[[AppTest], Any]) -> None:
        at.user = dict(who)  # the session changed hands after the page was drawn
        click(at)
        at.run()
        assert not at.exception
        assert any(refusal in m for m in messages(at)), messages(at)

    before = state(rt)
    at = render("stations.py", user=AS_ADMIN)  # (Sync Now is enabled only while none runs)
    assert not at.button(key="sync_now").disabled
    attempt(at, lambda a: a.button(key="sync_now").click())
    assert state(rt) == before, "a refused sync request reached the engine"

    cancelled, active, sync_id = two_runs(rt)
    before = state(rt)

    for key in (f"confirm_{sync_id}", f"refuse_{sync_id}", f"cancel_{active}"):
        at = render("history.py", user=AS_ADMIN, query={"run": active})
        at.checkbox(key=f"sure_{sync_id}").check()
        at.run()
        assert not at.button(key=key).disabled
        attempt(at, lambda a, k=key: a.button(key=k).click())

    at = render("history.py", user=AS_ADMIN, query={"run": cancelled})
    attempt(at, lambda a: a.button(key=f"retry_{cancelled}").click())

    for key in (f"pause_{JOB}", f"run_{JOB}"):
        at = render("schedules.py", user=AS_ADMIN)
        attempt(at, lambda a, k=key: a.button(key=k).click())
    at = render("schedules.py", user=AS_ADMIN)
    at.text_input(key=f"cron_{JOB}").set_value("*/5 * * * *").run()
    assert not at.button(key=f"save_{JOB}").disabled
    attempt(at, lambda a: a.button(key=f"save_{JOB}").click())

    assert state(rt) == before, "a refused action reached the engine or the scheduler"


def test_an_admins_own_click_does_reach_the_engine(restricted: Runtime) -> None:
    rt = restricted
    at = render("stations.py", user=AS_ADMIN)
    at.button(key="sync_now").click().run()
    assert not at.exception
    runs = rt.engine.list_runs()
    assert len(runs) == 1 and runs[0].triggered_by == ADMIN

    at = render("schedules.py", user=AS_ADMIN)
    at.button(key=f"pause_{JOB}").click().run()
    paused = {s.job_id: (s.paused, s.updated_by) for s in rt.scheduler.schedules()}
    assert paused[JOB] == (True, ADMIN)
