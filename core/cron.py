"""Cron expressions as operators write them, turned into APScheduler triggers.

APScheduler 3 counts weekdays from Monday = 0, while cron counts from Sunday
= 0 (and 7); ``CronTrigger.from_crontab`` passes the numbers through, so
``0 0 * * 1`` would fire on Tuesdays. Here the weekday field is expanded into
explicit day names first, so every expression means what cron means by it.
"""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    low = token.strip().lower()
    if low[:3] in DAY_NAMES and not low.isdigit():
        return DAY_NAMES.index(low[:3])
    value = int(low)
    if not 0 <= value <= 7:
        raise ValueError(f"weekday {token!r} is outside 0-7")
    return value % 7


def weekday_field(field: str) -> str:
    """A cron weekday field as APScheduler day names (``*`` stays ``*``)."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step_text!r} must be positive")
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            a, b = body.split("-", 1)
            first, last = _day(a), _day(b)
            if b.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"weekday range {body!r} runs backwards")
        else:
            first = last = _day(body)
            if step_text:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a five-field cron expression; ValueError says what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron expression has five fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=weekday_field(weekday),
        timezone=timezone,
    )
