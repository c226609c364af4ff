"""Settings: documented defaults, and a bad value names the setting and what is allowed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.logs import RedactSecrets
from core.settings import SPECS, Secret, Settings, load_settings, settings_table


def test_defaults_need_no_environment(tmp_path: Path) -> None:
    s = load_settings({}, secrets_file=tmp_path / "none.toml")
    assert s == Settings()
    assert s.timezone == "Africa/Johannesburg"
    assert s.uses_simulator
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("data/stationsync.db")


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("STATIONSYNC_WORKERS", "0", "from 1 to 64"),
        ("STATIONSYNC_WORKERS", "many", "whole number"),
        ("STATIONSYNC_LEASE_S", "nan", "a number from"),
        ("STATIONSYNC_TIMEZONE", "Africa/Atlantis", "IANA time zone"),
        ("STATIONSYNC_SYNC_CRON", "every midnight", "five-field cron"),
        ("STATIONSYNC_SYNC_CRON", "0 0 * * 9", "five-field cron"),
        ("STATIONSYNC_DATABASE_URL", "mysql://x/y", "sqlite:/// or postgresql://"),
        ("STATIONSYNC_SCHEDULER", "maybe", "true or false"),
        ("STATIONSYNC_DELETE_GUARD_SHARE", "1.5", "from 0 to 1"),
        ("STATIONSYNC_TARANA_BASE_URL", "ftp://portal", "http:// or https://"),
        ("STATIONSYNC_LOG_LEVEL", "LOUD", "one of DEBUG"),
        ("STATIONSYNC_WROKERS", "4", "not a known setting"),
    ],
)
def test_a_bad_value_names_the_setting_and_what_is_allowed(
    tmp_path: Path, name: str, value: str, allowed: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({name: value}, secrets_file=tmp_path / "none.toml")
    assert name in str(err.value)
    assert allowed in str(err.value)


def test_heartbeat_must_be_shorter_than_the_lease(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="STATIONSYNC_HEARTBEAT_S.*shorter than"):
        load_settings(
            {"STATIONSYNC_LEASE_S": "5", "STATIONSYNC_HEARTBEAT_S": "5"},
            secrets_file=tmp_path / "none.toml",
        )


def test_a_real_portal_needs_credentials(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="USERNAME and STATIONSYNC_TARANA_PASSWORD"):
        load_settings(
            {"STATIONSYNC_TARANA_BASE_URL": "https://portal.example"},
            secrets_file=tmp_path / "none.toml",
        )


def test_secrets_file_supplies_the_password_and_never_shows_it(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        '[stationsync]\ntarana_username = "ops@example.com"\ntarana_password = "s3cr3t-Pa55"\n'
    )
    s = load_settings(
        {"STATIONSYNC_TARANA_BASE_URL": "https://portal.example", "STATIONSYNC_TARANA_OPERATOR_ID": "4107"},
        secrets_file=secrets,
    )
    assert s.tarana_password.reveal() == "s3cr3t-Pa55"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.tarana_password)
    assert s.tarana_username == "ops@example.com"


def test_a_real_portal_needs_an_operator_id(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="STATIONSYNC_TARANA_OPERATOR_ID"):
        load_settings(
            {
                "STATIONSYNC_TARANA_BASE_URL": "https://portal.example",
                "STATIONSYNC_TARANA_USERNAME": "ops",
                "STATIONSYNC_TARANA_PASSWORD": "pw",
            },
            secrets_file=tmp_path / "none.toml",
        )


def test_a_bad_database_password_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(
            {"STATIONSYNC_DATABASE_URL": "oracle://u:hunter22@h/db"},
            secrets_file=tmp_path / "none.toml",
        )
    assert "hunter22" not in str(err.value)


def test_every_setting_is_documented() -> None:
    table = settings_table()
    assert all(f"`{spec.env}`" in table for spec in SPECS)


def test_log_filter_blanks_configured_secrets() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "login as %s with %s", ("u", "pw-123456"), None)
    RedactSecrets(["pw-123456"]).filter(record)
    assert "pw-123456" not in record.getMessage()
    assert Secret("pw-123456") != Secret("other")


def test_readme_settings_table_is_current() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    body = readme.split("<!-- settings-table -->\n", 1)[1].split("\n<!-- /settings-table -->", 1)[0]
    assert body == settings_table()
