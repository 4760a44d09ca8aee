"""Working days and report periods for the regular-use statistics.

Working days are Monday to Friday, minus Vietnam's public holidays from the ``holidays`` package
(Tết, and the bridge days it knows with their make-up Saturdays), minus ``[stats] extra_days_off``,
plus ``[stats] makeup_days`` (Saturdays worked in exchange for a bridge day the package does not know). Weeks start on Monday; a
report period is cut into its weeks, and a week at either end keeps only its days in the period.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, timedelta

import holidays

from provisioning.config import StatsSettings
from provisioning.errors import InvalidInput

PERIOD_HINT = "write 2025, 2025-Q3, 2025-11 or 2025-01-01..2025-06-30"


@dataclass(frozen=True)
class Period:
    """Days ``start`` to ``end``, both included, named as the person wrote it."""

    label: str
    start: date
    end: date

    def previous_year(self) -> Period:
        """The same period one year earlier (a range's 29 February becomes the 28th)."""
        if match := re.fullmatch(r"(\d{4})(-Q[1-4]|-\d{2})?", self.label):
            return parse_period(f"{int(match.group(1)) - 1}{match.group(2) or ''}")

        def back(d: date) -> date:
            return d.replace(year=d.year - 1, day=28) if (d.month, d.day) == (2, 29) else d.replace(year=d.year - 1)

        return Period(f"{back(self.start)}..{back(self.end)}", back(self.start), back(self.end))

    def months(self) -> list[Period]:
        """The calendar months the period touches, each cut to the period."""
        out, first = [], self.start.replace(day=1)
        while first <= self.end:
            nxt = (first + timedelta(days=32)).replace(day=1)
            out.append(Period(f"{first:%Y-%m}", max(first, self.start), min(nxt - timedelta(days=1), self.end)))
            first = nxt
        return out


def parse_period(text: str) -> Period:
    """A period from ``2025``, ``2025-Q3``, ``2025-11`` or ``FROM..TO`` (ISO dates, both included).

    :raises InvalidInput: anything else, or an end before the start.
    """
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}", value):
            year = int(value)
            return Period(value, date(year, 1, 1), date(year, 12, 31))
        if match := re.fullmatch(r"(\d{4})-[Qq]([1-4])", value):
            year, q = int(match.group(1)), int(match.group(2))
            start = date(year, 3 * q - 2, 1)
            end = (date(year + 1, 1, 1) if q == 4 else date(year, 3 * q + 1, 1)) - timedelta(days=1)
            return Period(f"{year}-Q{q}", start, end)
        if re.fullmatch(r"\d{4}-\d{2}", value):
            start = date.fromisoformat(value + "-01")
            return Period(value, start, (start + timedelta(days=32)).replace(day=1) - timedelta(days=1))
        if ".." in value:
            first, _, last = value.partition("..")
            start, end = date.fromisoformat(first.strip()), date.fromisoformat(last.strip())
            if end < start:
                raise InvalidInput("period", text, "ends before it starts", "put the earlier date first")
            return Period(f"{start}..{end}", start, end)
    except ValueError:
        pass
    raise InvalidInput("period", text, "is not a period", PERIOD_HINT)


@dataclass(frozen=True)
class Week:
    """The days of one Monday-to-Sunday week inside a period, and which of them are working days."""

    monday: date
    start: date
    end: date
    working: tuple[date, ...]

    @property
    def whole(self) -> bool:
        return self.start == self.monday and self.end == self.monday + timedelta(days=6)


class WorkCalendar:
    """Vietnam's working days under the configured make-up days and extra days off."""

    def __init__(self, stats: StatsSettings) -> None:
        self.makeup = frozenset(date.fromisoformat(d) for d in stats.makeup_days)
        self.off = frozenset(date.fromisoformat(d) for d in stats.extra_days_off)
        self._years: dict[int, holidays.HolidayBase] = {}

    def _year(self, year: int) -> holidays.HolidayBase:
        if year not in self._years:
            self._years[year] = holidays.country_holidays("VN", years=year)
        return self._years[year]

    def holiday(self, day: date) -> str | None:
        """The public holiday's name on ``day`` ("day off" for a configured extra day off), else None."""
        return "day off" if day in self.off else self._year(day.year).get(day)

    def is_working(self, day: date) -> bool:
        """Configured days first, then the package's calendar (which knows some make-up Saturdays)."""
        if day in self.makeup:
            return True
        return day not in self.off and self._year(day.year).is_working_day(day)

    def working_days(self, start: date, end: date) -> list[date]:
        """The working days from ``start`` to ``end``, both included, in order."""
        return [d for d in _days(start, end) if self.is_working(d)]

    def weeks(self, period: Period) -> list[Week]:
        """The period's weeks, cut to the period (the first and last may be partial)."""
        working = self.working_days(period.start, period.end)
        out = []
        monday = period.start - timedelta(days=period.start.weekday())
        while monday <= period.end:
            start, end = max(monday, period.start), min(monday + timedelta(days=6), period.end)
            out.append(Week(monday, start, end, tuple(working[bisect_left(working, start):bisect_right(working, end)])))
            monday += timedelta(days=7)
        return out

    def fingerprint(self) -> str:
        """Changes whenever the working days could change (configuration or holidays package)."""
        text = ";".join([holidays.__version__, *sorted(map(str, self.makeup)), "|", *sorted(map(str, self.off))])
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
