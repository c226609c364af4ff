"""Declaring durable functions: triggers, retries, singleton, cancel-on, timeout.

A ``Function`` is plain data plus a handler. The ``Registry`` maps event names
to the functions they start or cancel. A cron trigger is an event trigger on
``cron/<function id>``: the scheduler only sends that event, so a cron fire and
an event take the same path into the engine. A failure handler becomes its own
function triggered by ``<function id>.failed``, as in Inngest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import InvalidCronError, UnknownFunctionError

if TYPE_CHECKING:
    from core.engine.context import Context

Handler = Callable[["Context"], Any]


@dataclass(frozen=True)
class Cron:
    """Fire at the times of a five-field cron expression, in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        validate_cron(self.expression, self.timezone)


@dataclass(frozen=True)
class On:
    """Start a run for every event with this name."""

    event: str


@dataclass(frozen=True)
class CancelOn:
    """Cancel an active run when ``event`` arrives and, if given, ``match`` agrees.

    ``match`` is a dotted path such as ``data.sync_id``: the incoming event's
    value there must equal the triggering event's value there.
    """

    event: str
    match: str | None = None


@dataclass(frozen=True)
class Function:
    id: str
    handler: Handler
    name: str = ""
    triggers: tuple[Cron | On, ...] = ()
    retries: int = 3
    singleton: bool = False
    concurrency: int | None = None
    cancel_on: tuple[CancelOn, ...] = ()
    timeout_s: float = 2 * 3600
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 600.0
    on_failure: Handler | None = None
    description: str = ""

    @property
    def title(self) -> str:
        return self.name or self.id

    @property
    def crons(self) -> tuple[Cron, ...]:
        return tuple(t for t in self.triggers if isinstance(t, Cron))

    @property
    def events(self) -> tuple[str, ...]:
        names = [t.event for t in self.triggers if isinstance(t, On)]
        if self.crons:
            names.append(cron_event(self.id))
        return tuple(names)


def cron_event(function_id: str) -> str:
    return f"cron/{function_id}"


def validate_cron(expression: str, timezone: str) -> None:
    """Raise InvalidCronError saying what is wrong with a cron expression or zone."""
    from core.cron import cron_trigger

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidCronError(f"unknown time zone {timezone!r}: use an IANA name") from exc
    if len(expression.split()) != 5:
        raise InvalidCronError(
            f"cron expression {expression!r} must have five fields: minute hour day month weekday"
        )
    try:
        cron_trigger(expression, timezone)
    except ValueError as exc:
        raise InvalidCronError(f"cron expression {expression!r} is not valid: {exc}") from exc


def function(
    id: str,
    *,
    triggers: Iterable[Cron | On] = (),
    **options: Any,
) -> Callable[[Handler], Function]:
    """Decorator: ``@function("tarana-sync", triggers=[On("x")], singleton=True)``."""

    def wrap(handler: Handler) -> Function:
        return Function(id=id, handler=handler, triggers=tuple(triggers), **options)

    return wrap


@dataclass
class Registry:
    """The functions one engine can run, indexed by the events that concern them."""

    functions: dict[str, Function] = field(default_factory=dict)

    def add(self, fn: Function) -> Function:
        if fn.id in self.functions:
            raise ValueError(f"function {fn.id!r} registered twice")
        self.functions[fn.id] = fn
        if fn.on_failure is not None:
            self.add(
                Function(
                    id=f"{fn.id}.on-failure",
                    name=f"{fn.title}: failure handler",
                    handler=fn.on_failure,
                    triggers=(On(f"{fn.id}.failed"),),
                    retries=fn.retries,
                )
            )
        return fn

    def get(self, function_id: str) -> Function:
        try:
            return self.functions[function_id]
        except KeyError:
            raise UnknownFunctionError(f"no function with id {function_id!r}") from None

    def triggered_by(self, event_name: str) -> list[Function]:
        return [f for f in self.functions.values() if event_name in f.events]

    def cancelled_by(self, event_name: str) -> list[Function]:
        return [
            f for f in self.functions.values() if any(c.event == event_name for c in f.cancel_on)
        ]

    def __iter__(self) -> Iterator[Function]:
        return iter(self.functions.values())


def lookup(document: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted path (``data.sync_id``) in an event, or None."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
