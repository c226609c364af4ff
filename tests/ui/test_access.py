"""The pure access rules: open without an admin list, admins only with one."""

from __future__ import annotations

import pytest

from core import access
from core.errors import AccessDeniedError

ADMINS = ("ops@example.com",)


def test_no_admin_list_is_open_and_recorded_as_local_operator() -> None:
    assert access.can_act((), None, logged_in=False)
    assert access.actor((), None, logged_in=False) == access.LOCAL_OPERATOR
    assert access.require((), None, False, "start a sync") == "local operator"


def test_signed_in_user_is_named_even_without_admin_list() -> None:
    assert access.actor((), "Someone@Example.com", logged_in=True) == "someone@example.com"


def test_admin_list_admits_listed_admin_case_insensitively() -> None:
    assert access.can_act(ADMINS, "OPS@example.com", logged_in=True)
    assert access.require(ADMINS, "Ops@Example.com", True, "start a sync") == "ops@example.com"


@pytest.mark.parametrize(
    ("email", "logged_in", "needle"),
    [
        (None, False, "Sign in as an administrator to start a sync"),
        ("ops@example.com", False, "Sign in as an administrator"),
        ("intruder@example.com", True, "intruder@example.com is not an administrator"),
        ("", True, "not an administrator"),
    ],
)
def test_admin_list_refuses_everyone_else(email: str | None, logged_in: bool, needle: str) -> None:
    assert not access.can_act(ADMINS, email, logged_in)
    with pytest.raises(AccessDeniedError, match=needle):
        access.require(ADMINS, email, logged_in, "start a sync")


def test_blank_entries_do_not_restrict() -> None:
    assert not access.restricted(("", "  "))
    assert access.can_act(("",), None, logged_in=False)


def test_core_access_does_not_import_streamlit() -> None:
    import ast
    from pathlib import Path

    import core.access as mod

    tree = ast.parse(Path(mod.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(n.split(".")[0] == "streamlit" for n in names)
