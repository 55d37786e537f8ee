"""Unit tests of the Dutch calendar: working days, school days and day-counted deadlines."""

from datetime import UTC, date, datetime, timedelta

import pytest

from services.feedback.calendar import AMSTERDAM, DutchCalendar, end_of_day

CAL = DutchCalendar()


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware Amsterdam wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=AMSTERDAM)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware UTC instant."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_koningsdag_on_monday_27_april_2026_is_not_a_working_day() -> None:
    assert date(2026, 4, 27).weekday() == 0
    assert not CAL.is_working_day(date(2026, 4, 27))
    assert CAL.is_working_day(date(2026, 4, 28))


def test_koningsdag_2025_moved_to_saturday_26_april_because_the_27th_was_a_sunday() -> None:
    assert date(2025, 4, 27).weekday() == 6
    assert CAL.is_public_holiday(date(2025, 4, 26))
    assert not CAL.is_public_holiday(date(2025, 4, 27))
    assert CAL.is_working_day(date(2025, 4, 25))
    assert CAL.is_working_day(date(2025, 4, 28))


def test_bevrijdingsdag_in_a_non_lustrum_year_2026_is_not_a_working_day() -> None:
    assert date(2026, 5, 5).weekday() == 1
    assert not CAL.is_working_day(date(2026, 5, 5))


def test_bevrijdingsdag_counts_every_year_not_only_every_fifth() -> None:
    for year in (2027, 2029, 2031, 2033):
        assert CAL.is_public_holiday(date(year, 5, 5)), year


def test_good_friday_3_april_2026_is_not_a_working_day() -> None:
    assert not CAL.is_working_day(date(2026, 4, 3))
    assert not CAL.is_working_day(date(2026, 4, 6))  # 2e Paasdag
    assert CAL.is_working_day(date(2026, 4, 2))


def test_ascension_and_whit_monday_2026_are_not_working_days() -> None:
    assert not CAL.is_working_day(date(2026, 5, 14))
    assert not CAL.is_working_day(date(2026, 5, 25))
    assert CAL.is_working_day(date(2026, 5, 15))


def test_christmas_days_are_closed_but_24_and_29_december_2026_are_working_days() -> None:
    assert not CAL.is_working_day(date(2026, 12, 25))
    assert not CAL.is_working_day(date(2026, 12, 26))
    assert CAL.is_working_day(date(2026, 12, 24))
    assert CAL.is_working_day(date(2026, 12, 29))
    assert not CAL.is_working_day(date(2027, 1, 1))


def test_weekends_are_not_working_days() -> None:
    assert not CAL.is_working_day(date(2026, 3, 14))
    assert not CAL.is_working_day(date(2026, 3, 15))


def test_an_extra_closed_day_of_the_municipality_is_not_a_working_day() -> None:
    cal = DutchCalendar(extra_closed_days=[date(2026, 5, 15)])
    assert not cal.is_working_day(date(2026, 5, 15))
    assert CAL.is_working_day(date(2026, 5, 15))


@pytest.mark.parametrize(
    ("region", "first", "last"),
    [
        ("noord", date(2026, 7, 4), date(2026, 8, 16)),
        ("midden", date(2026, 7, 18), date(2026, 8, 30)),
        ("zuid", date(2026, 7, 11), date(2026, 8, 23)),
    ],
)
def test_summer_holidays_2026_follow_the_official_schedule_per_region(
    region: str, first: date, last: date
) -> None:
    assert CAL.summer_holiday_start(2026, region) == first
    assert CAL.is_school_day(first - timedelta(days=1), region=region)  # the Friday before
    day = first
    while day <= last:
        assert not CAL.is_school_day(day, region=region), day
        day += timedelta(days=1)
    assert CAL.is_school_day(last + timedelta(days=1), region=region)  # the Monday after


def test_region_names_are_case_insensitive_and_unknown_regions_are_refused() -> None:
    assert not CAL.is_school_day(date(2026, 7, 6), region="Noord")
    with pytest.raises(ValueError, match="unknown school region"):
        CAL.is_school_day(date(2026, 7, 6), region="west")


def test_a_school_with_its_own_autumn_week_has_no_school_days_that_week() -> None:
    cal = DutchCalendar(school_overrides={"12AB": [(date(2026, 10, 10), date(2026, 10, 18))]})
    wednesday = date(2026, 10, 14)  # midden's advisory autumn break is 17-25 October
    assert not cal.is_school_day(wednesday, region="midden", school="12AB")
    assert cal.is_school_day(wednesday, region="midden", school="99ZZ")
    assert cal.is_school_day(wednesday, region="midden")
    assert not cal.is_school_day(date(2026, 10, 21), region="midden", school="12AB")


def test_a_school_override_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        DutchCalendar(school_overrides={"12AB": [(date(2026, 10, 18), date(2026, 10, 10))]})


def test_end_of_day_is_midnight_amsterdam_in_utc() -> None:
    assert end_of_day(date(2026, 1, 5)) == utc(2026, 1, 5, 23)
    assert end_of_day(date(2026, 7, 6)) == utc(2026, 7, 6, 22)


def test_two_working_days_from_friday_skip_the_weekend() -> None:
    due = CAL.add_working_days(local(2026, 3, 13, 14), 2)
    assert due == local(2026, 3, 18)  # end of Tuesday 17 March
    assert due.tzinfo == UTC


def test_one_working_day_before_easter_skips_good_friday_the_weekend_and_easter_monday() -> None:
    assert CAL.add_working_days(local(2026, 4, 2, 10), 1) == utc(2026, 4, 7, 22)


def test_one_working_day_before_koningsdag_and_bevrijdingsdag_skips_them() -> None:
    assert CAL.add_working_days(local(2026, 4, 24, 10), 1) == local(2026, 4, 29)
    assert CAL.add_working_days(local(2026, 5, 4, 10), 1) == local(2026, 5, 7)


def test_same_working_day_ends_at_midnight_or_at_the_end_of_the_next_working_day() -> None:
    assert CAL.add_working_days(local(2026, 3, 16, 9), 0) == local(2026, 3, 17)
    assert CAL.add_working_days(local(2026, 3, 14, 9), 0) == local(2026, 3, 17)  # Saturday


def test_working_days_counted_from_a_weekend_start_on_monday() -> None:
    assert CAL.add_working_days(local(2026, 3, 14, 9), 1) == local(2026, 3, 17)


def test_the_start_day_is_taken_in_amsterdam_not_in_utc() -> None:
    late_monday = utc(2026, 3, 16, 23, 30)  # already Tuesday 00:30 in Amsterdam
    assert CAL.add_working_days(late_monday, 0) == local(2026, 3, 18)


def test_a_working_day_term_across_the_spring_dst_change_ends_at_local_midnight() -> None:
    due = CAL.add_working_days(local(2026, 3, 27, 10), 1)
    assert due == utc(2026, 3, 30, 22)  # 00:00 CEST on 31 March
    assert CAL.add_working_days(local(2026, 3, 20, 10), 1) == utc(2026, 3, 23, 23)  # still CET


def test_a_working_day_term_across_the_autumn_dst_change_ends_at_local_midnight() -> None:
    assert CAL.add_working_days(local(2026, 10, 23, 10), 1) == utc(2026, 10, 26, 23)


def test_school_days_jump_over_the_summer_holidays_of_the_region() -> None:
    start = local(2026, 7, 10, 10)  # Friday; midden's summer starts 18 July
    assert CAL.add_school_days(start, 5, region="midden") == local(2026, 7, 18)
    assert CAL.add_school_days(start, 6, region="midden") == local(2026, 9, 1)
    assert CAL.add_school_days(local(2026, 7, 3, 10), 1, region="noord") == local(2026, 8, 18)


def test_school_days_skip_a_school_override_week_as_well_as_the_regional_break() -> None:
    cal = DutchCalendar(school_overrides={"12AB": [(date(2026, 10, 10), date(2026, 10, 18))]})
    friday = local(2026, 10, 9, 10)
    # Overrides add to the regional holidays: 10-18 Oct (own week) and 17-25 Oct (midden).
    assert cal.add_school_days(friday, 1, region="midden", school="12AB") == local(2026, 10, 27)
    assert cal.add_school_days(friday, 1, region="midden") == local(2026, 10, 13)


def test_a_negative_term_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CAL.add_working_days(local(2026, 3, 16, 9), -1)


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_days(datetime(2026, 3, 16, 9), 1)
