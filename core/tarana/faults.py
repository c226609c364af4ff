"""The simulator's fault knobs: one frozen dataclass, parsed from text or JSON.

A ``Faults`` value says how badly the simulated portal should behave: added
latency, random 5xx, rate-limit bursts, hanging requests, early session
expiry, a list that changes while it is paged, deliberately broken records,
an outage, and bodies that are not JSON. It is written as text
(``"error_rate=0.3,latency_ms=50"``) in settings and on the command line, and
as a JSON object over the simulator's control endpoint; both routes go
through the same validation so a typo is refused with the knob's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["KNOB_HELP", "Faults"]


def _rate(raw: object) -> float:
    value = _number(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("a share from 0 to 1")
    return value


def _number(raw: object) -> float:
    if isinstance(raw, bool):  # JSON true is not the number 1 here
        raise ValueError("a number")  # noqa: TRY004 - parse errors are ValueErrors by contract
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError("a number") from exc
    if not math.isfinite(value):
        raise ValueError("a finite number")
    return value


def _non_negative(raw: object) -> float:
    value = _number(raw)
    if value < 0:
        raise ValueError("a number of 0 or more")
    return value


def _count(raw: object) -> int:
    value = _number(raw)
    if value < 0 or value != int(value):
        raise ValueError("a whole number of 0 or more")
    return int(value)


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("true or false")


# knob -> (parser, what it does); the order is the order of the help text
_KNOBS: dict[str, tuple[Callable[[object], Any], str]] = {
    "latency_ms": (_non_negative, "milliseconds added to every request"),
    "error_rate": (_rate, "share of data requests answered 500/502/503"),
    "rate_limit_every": (_count, "after this many data requests a 429 burst (0 = off)"),
    "rate_limit_burst": (_count, "how many 429s each burst holds"),
    "retry_after_s": (_non_negative, "Retry-After seconds sent with each 429"),
    "timeout_rate": (_rate, "share of data requests that hang for hang_s"),
    "hang_s": (_non_negative, "how long a hanging request hangs"),
    "session_ttl_s": (_non_negative, "how long a login session lives"),
    "churn": (_rate, "chance per device-list request that a BN is inserted or removed"),
    "malformed": (_rate, "share of BN list items deliberately broken"),
    "outage": (_flag, "device list answers empty pages with totalCount 0"),
    "garbage_rate": (_rate, "share of data requests answered 200 with a non-JSON body"),
    "truncate_rate": (_rate, "share of data requests whose JSON body is cut short"),
}

KNOB_HELP = "\n".join(f"{name}: {doc}" for name, (_, doc) in _KNOBS.items())


@dataclass(frozen=True)
class Faults:
    """How the simulated portal misbehaves; the default misbehaves not at all."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_every: int = 0
    rate_limit_burst: int = 3
    retry_after_s: float = 1.0
    timeout_rate: float = 0.0
    hang_s: float = 35.0
    session_ttl_s: float = 3600.0
    churn: float = 0.0
    malformed: float = 0.0
    outage: bool = False
    garbage_rate: float = 0.0
    truncate_rate: float = 0.0

    def __post_init__(self) -> None:
        # validate direct construction too, so Faults(error_rate=2) fails as parse would
        for name, (parse, _) in _KNOBS.items():
            object.__setattr__(self, name, _checked(name, parse, getattr(self, name)))

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Parse ``"knob=value,knob=value"``; an empty text means no faults."""
        values: dict[str, object] = {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"fault {part!r} is not of the form knob=value")
            if name in values:
                raise ValueError(f"fault knob {name!r} is given twice")
            values[name] = raw.strip()
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> Faults:
        """Build from a mapping of knob to value (JSON or text values alike)."""
        unknown = sorted(set(values) - set(_KNOBS))
        if unknown:
            raise ValueError(f"unknown fault knob {unknown[0]!r}; known knobs: {', '.join(_KNOBS)}")
        return cls(**{k: _checked(k, _KNOBS[k][0], v) for k, v in values.items()})

    def with_changes(self, **changes: object) -> Faults:
        return replace(self, **changes)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_text(self) -> str:
        """The knobs that differ from the defaults, in ``parse`` syntax."""
        default = Faults()
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        ]
        return ",".join(parts)


def _checked(name: str, parse: Callable[[object], Any], raw: object) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"fault knob {name} must be {exc} (got {raw!r})") from exc
