"""Bad settings and schedule input end in one clear message, and nothing runs that should not.

A bad cron expression, an unknown or path-like time zone, and a bad database
URL are refused when settings load (naming the setting and what is allowed,
never echoing a database password), by the command line (one line, exit code
2, no traceback) and by the dashboard (a message on the page, no traceback).
On the schedules page a bad expression is refused with the reason and cannot
be saved, and the scheduler refuses it too, leaving the stored schedule as it
was.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import core.runtime
from core import cli
from core.errors import SettingsError, StationsyncError
from core.runtime import Runtime, shutdown_runtime
from core.settings import load_settings
from tests.security.conftest import ROOT, clean_environ, page_text, render

DB_PASSWORD = "DbSecretPw-K4v7t1"
JOB = "tarana-sync:cron:0"

BAD_CRON = (
    "61 * * * *", "* * *", "0 0 * * * *", "@reboot", "0 0 * * 8", "*/0 * * * *", "",
    "0 0 * * 1; DROP TABLE schedules", "$(touch pwned) * * * *", "0 0 * * *\n0 1 * * *",
    "0 0 */99999999999999999999 * *", "0 0 * * mon-", "a" * 2000,
)  # fmt: skip
BAD_ZONES = (
    "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "", "UTC\x00", "Africa/Johannesburg ",
    "Europe/London; DROP TABLE schedules",
)  # fmt: skip
BAD_URLS = (
    f"mysql://app:{DB_PASSWORD}@127.0.0.1/stations",
    f"app:{DB_PASSWORD}@127.0.0.1/stations",
    "not a url",
    "sqlite:relative.db",
    f"http://app:{DB_PASSWORD}@127.0.0.1:5432/stations",
)
CASES = (
    [("SYNC_CRON", v, "five-field cron") for v in BAD_CRON]
    + [("TIMEZONE", v, "IANA time zone") for v in BAD_ZONES]
    + [("DATABASE_URL", v, "sqlite:/// or postgresql://") for v in BAD_URLS]
)


@pytest.mark.parametrize(
    ("name", "value", "allowed"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_a_bad_setting_is_refused_by_name(
    tmp_path: Path, name: str, value: str, allowed: str
) -> None:
    env = {f"STATIONSYNC_{name}": value}
    with pytest.raises(SettingsError) as info:
        load_settings(env, secrets_file=tmp_path / "none.toml")
    text = str(info.value)
    assert f"STATIONSYNC_{name}" in text and allowed in text
    assert "\n" not in text and DB_PASSWORD not in text


def _cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str]:
    for key, value in clean_environ({f"STATIONSYNC_{k}": v for k, v in env.items()}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = cli.main(["runs"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("name", "value"),
    [("SYNC_CRON", "61 * * * *"), ("TIMEZONE", "../../etc/passwd"), ("DATABASE_URL", BAD_URLS[0])],
)
def test_the_command_line_says_what_is_wrong_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_env: Callable[..., None],
    name: str,
    value: str,
) -> None:
    code, output = _cli(monkeypatch, capsys, **{name: value})
    assert code == 2
    assert output.startswith("stationsync: setting ") and output.count("\n") == 1, output
    assert f"STATIONSYNC_{name}" in output and DB_PASSWORD not in output


def _unusable_sqlite_url(tmp_path: Path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return f"sqlite:///{blocker}/data/stationsync.db"  # its folder cannot be made


def test_a_database_that_cannot_be_opened_is_one_clear_line_too(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    app_env: Callable[..., None],
    tmp_path: Path,
) -> None:
    for url in (
        f"postgresql://app:{DB_PASSWORD}@127.0.0.1:notaport/x",
        _unusable_sqlite_url(tmp_path),
    ):
        try:
            code, output = _cli(monkeypatch, capsys, DATABASE_URL=url)
        except Exception as exc:  # noqa: BLE001 - what must not happen is the point
            pytest.fail(f"{url}: the command line raised {type(exc).__name__}: {exc}")
        assert code == 2 and output.startswith("stationsync: ") and output.count("\n") == 1, output
        assert DB_PASSWORD not in output


def test_a_child_process_with_a_bad_setting_exits_2_without_a_traceback() -> None:
    env = clean_environ(
        {"STATIONSYNC_SYNC_CRON": "0 0 * * 1; rm -rf /", "STATIONSYNC_SCHEDULER": "false"}
    )
    done = subprocess.run(
        [sys.executable, "-m", "core", "runs"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "STATIONSYNC_SYNC_CRON" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("SYNC_CRON", "0 0 * * 1; DROP TABLE schedules", "STATIONSYNC_SYNC_CRON"),
        ("TIMEZONE", "Mars/Olympus", "STATIONSYNC_TIMEZONE"),
        ("DATABASE_URL", BAD_URLS[0], "STATIONSYNC_DATABASE_URL"),
        ("DATABASE_URL", "unusable sqlite folder", "stationsync.db"),
    ],
)
def test_the_dashboard_explains_a_bad_setting_instead_of_failing(
    app_env: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    keep_logging: None,
    tmp_path: Path,
    name: str,
    value: str,
    needle: str,
) -> None:
    if value == "unusable sqlite folder":
        value = _unusable_sqlite_url(tmp_path)
    app_env(**{name: value})
    shutdown_runtime()
    core.runtime.install_runtime(None)
    try:
        at = render("stations.py")
    finally:
        shutdown_runtime()
    errors = [str(e.value) for e in at.error]
    assert any("Could not start Stationsync" in e and needle in e for e in errors), errors
    assert DB_PASSWORD not in page_text(at)


# --- the schedules page and the scheduler ------------------------------------


def test_a_bad_cron_on_the_schedules_page_is_refused_and_cannot_be_saved(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    before = [(s.job_id, s.cron, s.timezone, s.paused) for s in rt.scheduler.schedules()]
    at = render("schedules.py")
    for expression in BAD_CRON[:10]:
        at.text_input(key=f"cron_{JOB}").set_value(expression).run()
        assert not at.exception
        save = at.button(key=f"save_{JOB}")
        if " ".join(expression.split()) == before[0][1]:
            continue
        assert save.disabled, expression
        assert [e for e in at.error if "cron" in str(e.value).lower()], expression
        save._value = True  # a forged click on the disabled button
        at.run()
    after = [(s.job_id, s.cron, s.timezone, s.paused) for s in rt.scheduler.schedules()]
    assert after == before


def test_the_scheduler_refuses_bad_expressions_and_zones(
    app_runtime: Callable[..., Runtime],
) -> None:
    rt = app_runtime()
    before = [(s.job_id, s.cron, s.timezone) for s in rt.scheduler.schedules()]
    for expression in BAD_CRON:
        with pytest.raises(StationsyncError):
            rt.scheduler.set_cron(JOB, expression, "ops@example.com")
    for zone in filter(None, BAD_ZONES):  # (an empty zone means: keep the schedule's own)
        with pytest.raises(StationsyncError):
            rt.scheduler.set_cron(JOB, "0 0 * * *", "ops@example.com", timezone=zone)
    with pytest.raises(StationsyncError):
        rt.scheduler.pause("'; DROP TABLE schedules; --", "ops@example.com")
    assert [(s.job_id, s.cron, s.timezone) for s in rt.scheduler.schedules()] == before
