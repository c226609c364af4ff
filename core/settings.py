"""Settings: every knob, read once from ``STATIONSYNC_*`` variables into a frozen object.

Each setting is declared once in ``SPECS`` with its default, what values are
allowed and what it does; the loader, the error messages and the README's
settings table (``python -m core settings``) all come from that one list.
Secrets (portal password, database password) may also come from
``.streamlit/secrets.toml``; they are held as ``Secret`` so that printing a
settings object never shows them. No other module reads ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import SettingsError

PREFIX = "STATIONSYNC_"


class Secret:
    """A string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _int_in(lo: int, hi: int) -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError
        return value

    return parse, f"a whole number from {lo} to {hi}"


def _float_in(lo: float, hi: float) -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not lo <= value <= hi:  # NaN fails both comparisons
            raise ValueError
        return value

    return parse, f"a number from {lo:g} to {hi:g}"


def _bool() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> bool:
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError

    return parse, "true or false (also 1/0, yes/no, on/off)"


def _timezone() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> str:
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError from exc
        return raw

    return parse, "an IANA time zone name such as Africa/Johannesburg or Europe/London"


def _database_url() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> str:
        scheme = raw.split(":", 1)[0].lower()
        if "://" not in raw or scheme.split("+")[0] not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError
        if scheme.split("+")[0] == "postgres":
            raw = "postgresql" + raw[len(scheme.split("+")[0]) :]
        return raw

    return parse, "a SQLAlchemy URL starting sqlite:/// or postgresql://"


def _cron() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> str:
        from core.cron import cron_trigger

        cron_trigger(raw, "UTC")
        return raw

    return parse, "a five-field cron expression such as '0 0 * * *'"


def _url() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> str:
        if not raw.startswith(("http://", "https://")):
            raise ValueError
        return raw.rstrip("/")

    return parse, "an http:// or https:// URL, or empty to use the built-in simulator"


def _text() -> tuple[Callable[[str], Any], str]:
    return (lambda raw: raw.strip()), "any text"


def _csv() -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> tuple[str, ...]:
        return tuple(sorted({p.strip().lower() for p in raw.split(",") if p.strip()}))

    return parse, "a comma-separated list of e-mail addresses"


def _secret() -> tuple[Callable[[str], Any], str]:
    return Secret, "any text (kept secret)"


def _choice(*options: str) -> tuple[Callable[[str], Any], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError
        return raw

    return parse, "one of " + ", ".join(options)


@dataclass(frozen=True)
class Spec:
    name: str
    default: str
    kind: tuple[Callable[[str], Any], str]
    doc: str
    secret_key: str | None = None  # key in .streamlit/secrets.toml [stationsync]

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


SPECS: tuple[Spec, ...] = (
    Spec("data_dir", "data", _text(), "Folder for the default SQLite file and logs."),
    Spec(
        "database_url",
        "",
        _database_url(),
        "Database URL; empty means sqlite:///<data_dir>/stationsync.db.",
        secret_key="database_url",
    ),
    Spec("workers", "4", _int_in(1, 64), "Worker threads that run durable functions."),
    Spec("poll_interval_s", "0.5", _float_in(0.01, 60), "How often idle workers look for work."),
    Spec("lease_s", "30", _float_in(0.5, 3600), "How long a run or scheduler lease lasts."),
    Spec("heartbeat_s", "10", _float_in(0.1, 600), "How often a lease is renewed (< lease_s)."),
    Spec("max_crashes", "3", _int_in(1, 100), "Lost leases before a run is declared dead."),
    Spec("timezone", "Africa/Johannesburg", _timezone(), "Time zone of schedules and the UI."),
    Spec("sync_cron", "0 0 * * *", _cron(), "When the scheduled sync fires (in timezone)."),
    Spec("scheduler", "true", _bool(), "Whether this process may hold the scheduler lease."),
    Spec("misfire_grace_s", "3600", _int_in(1, 7 * 86400), "Catch-up window for missed fires."),
    Spec("tarana_base_url", "", _url(), "Portal base URL; empty starts the built-in simulator."),
    Spec("tarana_username", "", _text(), "Portal user name.", secret_key="tarana_username"),
    Spec("tarana_password", "", _secret(), "Portal password.", secret_key="tarana_password"),
    Spec("tarana_operator_id", "", _text(), "Operator id (required with a real portal)."),
    Spec("tarana_concurrency", "8", _int_in(1, 64), "Device-list pages fetched at once."),
    Spec("tarana_timeout_s", "30", _float_in(0.1, 600), "Timeout of one portal request."),
    Spec("tarana_retries", "6", _int_in(0, 50), "Retries of one portal request (transient)."),
    Spec("tarana_backoff_max_s", "30", _float_in(0, 3600), "Longest wait between retries."),
    Spec("simulator_stations", "700", _int_in(1, 1_000_000), "Base stations the simulator makes."),
    Spec("simulator_seed", "7", _int_in(0, 2**31), "Seed of the simulator's data."),
    Spec("simulator_faults", "", _text(), "Simulator faults, e.g. 'error_rate=0.3,latency_ms=50'."),
    Spec("delete_guard_share", "0.10", _float_in(0, 1), "Largest share deleted unconfirmed."),
    Spec("confirm_timeout_s", "86400", _int_in(1, 30 * 86400), "How long a guarded delete waits."),
    Spec("write_batch", "5000", _int_in(1, 100_000), "Stations written per checkpointed batch."),
    Spec("ui_poll_active_s", "1", _float_in(0.1, 60), "UI refresh while a sync runs."),
    Spec("ui_poll_idle_s", "30", _float_in(1, 3600), "UI refresh when idle."),
    Spec("admins", "", _csv(), "Admin e-mails; empty means actions are open to all."),
    Spec("log_level", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "Log level."),
)


@dataclass(frozen=True)
class Settings:
    data_dir: str = "data"
    database_url: str = ""
    workers: int = 4
    poll_interval_s: float = 0.5
    lease_s: float = 30.0
    heartbeat_s: float = 10.0
    max_crashes: int = 3
    timezone: str = "Africa/Johannesburg"
    sync_cron: str = "0 0 * * *"
    scheduler: bool = True
    misfire_grace_s: int = 3600
    tarana_base_url: str = ""
    tarana_username: str = ""
    tarana_password: Secret = field(default_factory=lambda: Secret(""))
    tarana_operator_id: str = ""
    tarana_concurrency: int = 8
    tarana_timeout_s: float = 30.0
    tarana_retries: int = 6
    tarana_backoff_max_s: float = 30.0
    simulator_stations: int = 700
    simulator_seed: int = 7
    simulator_faults: str = ""
    delete_guard_share: float = 0.10
    confirm_timeout_s: int = 86400
    write_batch: int = 5000
    ui_poll_active_s: float = 1.0
    ui_poll_idle_s: float = 30.0
    admins: tuple[str, ...] = ()
    log_level: str = "INFO"

    @property
    def db_url(self) -> str:
        """The database URL in force (the SQLite default filled in)."""
        if self.database_url:
            return self.database_url
        path = Path(self.data_dir).resolve() / "stationsync.db"
        return f"sqlite:///{path}"

    @property
    def uses_simulator(self) -> bool:
        return not self.tarana_base_url

    def replace(self, **changes: Any) -> Settings:
        from dataclasses import replace

        return replace(self, **changes)


def _parse(spec: Spec, raw: str) -> Any:
    parse, allowed = spec.kind
    if spec.name == "database_url" and raw == "":
        return ""
    if spec.name == "tarana_base_url" and raw == "":
        return ""
    try:
        return parse(raw)
    except Exception as exc:  # any parse failure is the user's input, not our bug
        shown = None if spec.secret_key else raw
        raise SettingsError(spec.env, allowed, shown) from exc


def _read_secrets(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(str(path), "a readable TOML file", None) from exc
    section = data.get("stationsync", {})
    return section if isinstance(section, dict) else {}


def load_settings(
    environ: Mapping[str, str] | None = None, secrets_file: str | Path | None = None
) -> Settings:
    """Read every setting; raise SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ
    secrets = _read_secrets(Path(secrets_file or ".streamlit/secrets.toml"))
    known = {s.env for s in SPECS}
    for key in env:
        if key.startswith(PREFIX) and key not in known and not key.startswith(PREFIX + "TEST_"):
            raise SettingsError(key, "not a known setting; see `python -m core settings`")
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw = env.get(spec.env)
        if raw is None and spec.secret_key and spec.secret_key in secrets:
            raw = str(secrets[spec.secret_key])
        values[spec.name] = _parse(spec, spec.default if raw is None else raw)
    settings = Settings(**values)
    if settings.heartbeat_s >= settings.lease_s:
        raise SettingsError(
            PREFIX + "HEARTBEAT_S",
            f"must be shorter than STATIONSYNC_LEASE_S ({settings.lease_s:g})",
            str(settings.heartbeat_s),
        )
    if settings.tarana_base_url and not (settings.tarana_username and settings.tarana_password):
        raise SettingsError(
            PREFIX + "TARANA_USERNAME",
            "STATIONSYNC_TARANA_USERNAME and STATIONSYNC_TARANA_PASSWORD are required "
            "when STATIONSYNC_TARANA_BASE_URL is set",
        )
    if settings.tarana_base_url and not settings.tarana_operator_id:
        raise SettingsError(
            PREFIX + "TARANA_OPERATOR_ID",
            "the operator id is required when STATIONSYNC_TARANA_BASE_URL is set "
            "(the portal cannot tell it from a login)",
        )
    return settings


def settings_table() -> str:
    """The settings as a Markdown table, for the README."""
    rows = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for spec in SPECS:
        rows.append(f"| `{spec.env}` | `{spec.default}` | {spec.kind[1]} | {spec.doc} |")
    return "\n".join(rows)


assert {f.name for f in fields(Settings)} == {s.name for s in SPECS}, "SPECS and Settings differ"
