"""Who may act: the pure rules behind every dashboard action, with no UI in them.

Reading is always open. Acting (starting or cancelling a sync, confirming a
guarded deletion, editing a schedule) is open to everyone when no admin list
is configured, and is then recorded as done by ``LOCAL_OPERATOR``. With an
admin list, only a signed-in user whose e-mail is on it may act, and the action
is recorded under that e-mail. ``require`` is the one guard every action calls,
at the moment it runs on the server, so no page state can bypass it.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import AccessDeniedError

__all__ = ["LOCAL_OPERATOR", "actor", "can_act", "denial_reason", "require", "restricted"]

LOCAL_OPERATOR = "local operator"


def _norm(email: str | None) -> str:
    return (email or "").strip().lower()


def restricted(admins: Iterable[str]) -> bool:
    """Whether actions are limited to admins at all."""
    return any(_norm(a) for a in admins)


def can_act(admins: Iterable[str], email: str | None, logged_in: bool = True) -> bool:
    """True if this user may act: anyone when there is no admin list, else listed admins."""
    allowed = {_norm(a) for a in admins if _norm(a)}
    if not allowed:
        return True
    return bool(logged_in) and _norm(email) in allowed


def actor(admins: Iterable[str], email: str | None, logged_in: bool) -> str:
    """The name an action is recorded under (the ``by`` of every command)."""
    if logged_in and _norm(email):
        return _norm(email)
    return LOCAL_OPERATOR


def denial_reason(
    admins: Iterable[str], email: str | None, logged_in: bool, action: str
) -> str | None:
    """Why this user may not perform ``action``, or None if they may."""
    if can_act(admins, email, logged_in):
        return None
    if not logged_in:
        return f"Sign in as an administrator to {action}."
    shown = _norm(email) or "this account"
    return (
        f"{shown} is not an administrator, so it cannot {action}. Ask an administrator to add it."
    )


def require(admins: Iterable[str], email: str | None, logged_in: bool, action: str) -> str:
    """The guard: return who is acting, or raise AccessDeniedError with a clear message."""
    admins = tuple(admins)
    reason = denial_reason(admins, email, logged_in, action)
    if reason is not None:
        raise AccessDeniedError(reason)
    return actor(admins, email, logged_in)
