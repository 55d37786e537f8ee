"""The Dutch calendar: working days (Algemene termijnenwet) and school days per region.

Working day: Monday to Friday, minus the days the Algemene termijnenwet treats as public
holidays (Nieuwjaarsdag, 2e Paasdag, Koningsdag, Bevrijdingsdag every year, Hemelvaartsdag,
2e Pinksterdag, 1e and 2e Kerstdag), Goede Vrijdag (as domain.md asks) and the extra days a
municipality closes (decree days). The national days come from `holidays`; it lists 5 May
only every fifth year, so it is added here for every year.

School day: a working day outside the school holidays of the region (`noord`, `midden`,
`zuid`) as `holidays` publishes them (`categories="school"`, subdivisions `Noord`, `Midden`,
`Zuid`; years 2014-2030, outside that range no school holidays are known) and outside the
extra ranges a school (BRIN) sets for itself, such as its own autumn week.

Deadlines are instants. A term of N days ends at 00:00 Europe/Amsterdam at the *start of
the day after* the Nth counted day after the start day (that is: the whole Nth day is
included; the returned instant is the first moment the term is exceeded), returned in UTC.
"""

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from holidays.constants import PUBLIC, SCHOOL
from holidays.countries.netherlands import Netherlands

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
REGIONS: tuple[str, ...] = ("noord", "midden", "zuid")
SCHOOL_HOLIDAY_YEARS = range(2014, 2031)
_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=64)
def _national_holidays(year: int) -> frozenset[date]:
    """Public holidays of one year per the Atw, with 5 May and Good Friday always included."""
    nl = Netherlands(years=year, categories=PUBLIC)
    days = set(nl)
    days.add(date(year, 5, 5))
    days.add(_good_friday(year))
    return frozenset(days)


def _good_friday(year: int) -> date:
    """Good Friday by the Gregorian computus (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return date(year, month, day + 1) - timedelta(days=2)


@lru_cache(maxsize=64)
def _school_holidays(year: int, region: str) -> frozenset[date]:
    """Official school holiday dates of one year in one region (empty outside 2014-2030)."""
    return frozenset(Netherlands(years=year, subdiv=region.capitalize(), categories=SCHOOL))


def normalize_region(region: str) -> str:
    """Return the region in lower case, or raise ValueError when it is not noord/midden/zuid."""
    key = region.strip().lower()
    if key not in REGIONS:
        raise ValueError(f"unknown school region {region!r}; expected one of {', '.join(REGIONS)}")
    return key


def end_of_day(day: date) -> datetime:
    """Return the end of a local Amsterdam day (00:00 of the next day) as a UTC instant."""
    return datetime.combine(day + _ONE_DAY, time(0), tzinfo=AMSTERDAM).astimezone(UTC)


def local_date(instant: datetime) -> date:
    """Return the Amsterdam calendar date of an aware instant."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(AMSTERDAM).date()


class DutchCalendar:
    """Working days and school days in the Netherlands, with municipal and school additions."""

    def __init__(
        self,
        extra_closed_days: Iterable[date] = (),
        school_overrides: Mapping[str, Iterable[tuple[date, date]]] | None = None,
    ) -> None:
        self._closed = frozenset(extra_closed_days)
        self._overrides: dict[str, tuple[tuple[date, date], ...]] = {}
        for school, ranges in (school_overrides or {}).items():
            checked = tuple(ranges)
            for first, last in checked:
                if first > last:
                    raise ValueError(
                        f"school {school!r}: holiday range {first}..{last} ends before it starts"
                    )
            self._overrides[school] = checked

    def has_school_override(self, school: str | None) -> bool:
        """Tell whether a school has holiday ranges of its own."""
        return school is not None and bool(self._overrides.get(school))

    def is_public_holiday(self, d: date) -> bool:
        """Tell whether a date is an Atw public holiday or an extra closed day."""
        return d in self._closed or d in _national_holidays(d.year)

    def is_working_day(self, d: date) -> bool:
        """Tell whether a date is a working day: Monday to Friday and not a holiday."""
        return d.weekday() < 5 and not self.is_public_holiday(d)

    def is_school_holiday(self, d: date, *, region: str, school: str | None = None) -> bool:
        """Tell whether a date falls in the region's school holidays or the school's own ranges."""
        if d in _school_holidays(d.year, normalize_region(region)):
            return True
        return school is not None and any(a <= d <= b for a, b in self._overrides.get(school, ()))

    def is_school_day(self, d: date, *, region: str, school: str | None = None) -> bool:
        """Tell whether a date is a working day outside the school holidays."""
        return self.is_working_day(d) and not self.is_school_holiday(d, region=region, school=school)

    def summer_holiday_start(self, year: int, region: str) -> date | None:
        """Return the first day (a Saturday) of the region's summer holidays, or None if unknown."""
        summer = [d for d in _school_holidays(year, normalize_region(region)) if 6 <= d.month <= 9]
        return min(summer) if summer else None

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """Return the UTC end of the Nth working day after the start day (0: same working day)."""
        return self._add_days(start, n, self.is_working_day)

    def add_school_days(self, start: datetime, n: int, *, region: str, school: str | None = None) -> datetime:
        """Return the UTC end of the Nth school day after the start day (0: same school day)."""
        region = normalize_region(region)
        return self._add_days(start, n, lambda d: self.is_school_day(d, region=region, school=school))

    @staticmethod
    def _add_days(start: datetime, n: int, counts: Callable[[date], bool]) -> datetime:
        """Step over local days, counting only those the predicate accepts."""
        if n < 0:
            raise ValueError(f"a term cannot be negative, got {n}")
        day = local_date(start)
        if n == 0:
            while not counts(day):
                day += _ONE_DAY
            return end_of_day(day)
        while n:
            day += _ONE_DAY
            if counts(day):
                n -= 1
        return end_of_day(day)
