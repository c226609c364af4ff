"""Stationsync's exception tree: one root, translated at each boundary.

Foreign exceptions (httpx, SQLAlchemy, pydantic) are caught where they enter
and re-raised as one of these with ``raise ... from exc``. Pages catch the
root and show what to do next.

    StationsyncError                      (jobstore.errors)
    ├── StorageError                      database unreachable or refused
    │   └── MigrationError                schema could not be upgraded
    ├── SettingsError                     a setting has a value that is not allowed
    ├── EngineError                       misuse of the durable engine
    │   ├── UnknownFunctionError
    │   ├── UnknownRunError
    │   ├── DuplicateStepError            a step name used twice in one run
    │   └── InvalidCronError
    ├── StepError                         raised inside a step by user code
    │   ├── NonRetriableError             fail the run now, no retry
    │   │   └── StepResultNotJSONError    a step returned something that is not JSON
    │   └── RetryAfterError               retry this step after N seconds
    ├── AccessDeniedError                 the user may not perform an action
    └── TaranaError                       the portal, as seen by the client
        ├── TaranaTransientError          connection, timeout, 5xx, 429: worth retrying
        │   └── TaranaRateLimitedError    429, carries retry_after
        ├── TaranaRejectedError           4xx the portal meant: retrying will not help
        │   └── TaranaAuthError           login refused, or refused twice
        └── TaranaInvalidResponseError    not JSON, no envelope, wrong shape
"""

from __future__ import annotations

from jobstore.errors import MigrationError, StationsyncError, StorageError

__all__ = [
    "AccessDeniedError",
    "DuplicateStepError",
    "EngineError",
    "InvalidCronError",
    "MigrationError",
    "NonRetriableError",
    "RetryAfterError",
    "SettingsError",
    "StationsyncError",
    "StepError",
    "StepResultNotJSONError",
    "StorageError",
    "TaranaAuthError",
    "TaranaError",
    "TaranaInvalidResponseError",
    "TaranaRateLimitedError",
    "TaranaRejectedError",
    "TaranaTransientError",
    "UnknownFunctionError",
    "UnknownRunError",
]


class SettingsError(StationsyncError):
    """A setting is malformed; the message names it and what is allowed."""

    def __init__(self, setting: str, allowed: str, got: str | None = None) -> None:
        self.setting = setting
        self.allowed = allowed
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"setting {setting} is invalid{shown}: {allowed}")


class EngineError(StationsyncError):
    """The durable engine was used in a way it does not allow."""


class UnknownFunctionError(EngineError):
    pass


class UnknownRunError(EngineError):
    pass


class DuplicateStepError(EngineError):
    pass


class InvalidCronError(EngineError):
    pass


class StepError(StationsyncError):
    """Raised by code inside a step to steer the engine's retry decision."""


class NonRetriableError(StepError):
    """The step failed in a way that retrying cannot fix: the run fails now."""


class StepResultNotJSONError(NonRetriableError):
    def __init__(self, step: str, type_name: str, detail: str = "") -> None:
        self.step = step
        self.type_name = type_name
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"step {step!r} returned a {type_name}, which is not JSON{extra}; "
            "return only dicts, lists, strings, numbers, booleans and None"
        )


class RetryAfterError(StepError):
    """Retry this step, but not before ``seconds`` have passed."""

    def __init__(self, seconds: float, message: str = "") -> None:
        self.seconds = max(0.0, float(seconds))
        super().__init__(message or f"retry after {self.seconds:g} s")


class AccessDeniedError(StationsyncError):
    """The signed-in user is not allowed to perform this action."""


class TaranaError(StationsyncError):
    """Any failure talking to the Tarana portal."""


class TaranaTransientError(TaranaError):
    """A failure that may pass: connection error, timeout, 5xx, 429."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        self.exhausted = False  # True once a retry loop has given up on it
        super().__init__(message)


class TaranaRateLimitedError(TaranaTransientError):
    """The portal answered 429."""


class TaranaRejectedError(TaranaError):
    """The portal refused the request in a way retrying cannot fix."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class TaranaAuthError(TaranaRejectedError):
    """Login was refused, or a request was refused again after a fresh login."""


class TaranaInvalidResponseError(TaranaError):
    """The portal answered, but not with the JSON envelope we expect."""
