"""The regular-use measure on hand-made cases whose answers are worked out in the comments, on both
databases; the rollup kept up to date incrementally; a property: more activity never lowers a rate.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import delete, func, select

from provisioning import accounts, agencies, usage_rollup
from provisioning.config import StatsSettings
from provisioning.errors import InvalidInput
from provisioning.models import AccountSpan, LoginEvent, UsageDaily, UsageEvent, UsageRollupState, UsageWeekly
from provisioning.workcalendar import Period, WorkCalendar, parse_period

D = date
# 2025-01-06 (Mon) .. 2025-02-09 (Sun): five weeks. The fourth (27 Jan - 2 Feb) is Tết: 27-31 Jan are
# holidays, so it has no working day. Working weeks: 6-12 Jan, 13-19 Jan, 20-26 Jan, 3-9 Feb (4),
# working days: 5 + 5 + 5 + 5 = 20.
TET_PERIOD = "2025-01-06..2025-02-09"


# -- calendar and periods ------------------------------------------------------------------------------

def test_periods_parse_as_written() -> None:
    assert parse_period("2025") == Period("2025", D(2025, 1, 1), D(2025, 12, 31))
    assert parse_period("2025-Q3") == Period("2025-Q3", D(2025, 7, 1), D(2025, 9, 30))
    assert parse_period("2024-02") == Period("2024-02", D(2024, 2, 1), D(2024, 2, 29))
    assert parse_period("2025-01-06..2025-02-09").end == D(2025, 2, 9)
    assert parse_period("2025-02").previous_year() == Period("2024-02", D(2024, 2, 1), D(2024, 2, 29))
    assert parse_period("2024-02-29..2024-03-01").previous_year().start == D(2023, 2, 28)
    assert [m.label for m in parse_period("2025-Q1").months()] == ["2025-01", "2025-02", "2025-03"]
    for bad in ("2025-13", "25", "2025-Q5", "2025-02-10..2025-02-01", "last year"):
        with pytest.raises(InvalidInput) as refused:
            parse_period(bad)
        assert "period" in str(refused.value) and bad in str(refused.value)


def test_working_days_follow_the_vietnamese_calendar() -> None:
    cal = WorkCalendar(StatsSettings())
    tet = cal.weeks(Period("tet", D(2025, 1, 27), D(2025, 2, 2)))
    assert tet[0].working == ()  # 27-31 Jan 2025: 29 Tết to the 3rd day of Tết
    assert len(cal.working_days(D(2025, 1, 6), D(2025, 2, 9))) == 20
    assert cal.is_working(D(2025, 4, 26))  # a Saturday worked for the 2 May bridge day
    assert not cal.is_working(D(2025, 5, 2)) and not cal.is_working(D(2025, 9, 2))
    configured = WorkCalendar(StatsSettings(makeup_days=("2025-05-03",), extra_days_off=("2025-04-29",)))
    assert configured.is_working(D(2025, 5, 3)) and not configured.is_working(D(2025, 4, 29))
    assert configured.fingerprint() != cal.fingerprint()
    week = cal.weeks(Period("cut", D(2025, 1, 1), D(2025, 1, 12)))
    assert [(w.start, w.end, len(w.working), w.whole) for w in week] == [
        (D(2025, 1, 1), D(2025, 1, 5), 2, False),  # 1 Jan is New Year's Day: Thu and Fri remain
        (D(2025, 1, 6), D(2025, 1, 12), 5, True),
    ]


# -- the measure, by hand --------------------------------------------------------------------------------

@pytest.fixture
def tet_world(ug):  # type: ignore[no-untyped-def]
    """Two agencies and the accounts of the worked example (see the comments in the test)."""
    ug.stats = {"min_eligible_days": 10}
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province", staff=10)
    ug.agency("000.00.71.H62", "UBND xã Đại Đồng", "commune", staff=4)
    a = ug.account("Nguyễn Văn An", "000.00.15.H62")
    b = ug.account("Trần Thị Bình", "000.00.15.H62")
    c = ug.account("Lê Văn Cường", "000.00.15.H62")
    d = ug.account("Phạm Thị Dung", "000.00.15.H62")
    e = ug.account("Hoàng Văn Em", "000.00.15.H62")
    f = ug.account("Vũ Thị Phương", "000.00.71.H62", spans=[(D(2025, 1, 20), None)])
    g = ug.account("Đặng Văn Giang", "000.00.71.H62", spans=[(D(2025, 2, 3), None)])
    h = ug.account("Bùi Thị Hoa", "000.00.71.H62", spans=[(D(2024, 10, 1), D(2025, 1, 13)), (D(2025, 1, 20), None)])
    shared = ug.account("Văn thư Sở Kế hoạch và Đầu tư", "000.00.15.H62", kind="shared")
    ug.send(a, D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 20), D(2025, 2, 3))
    ug.send(b, D(2025, 1, 6), D(2025, 1, 13))
    ug.login(b, D(2025, 1, 21))
    working = WorkCalendar(StatsSettings()).working_days(D(2025, 1, 6), D(2025, 2, 9))
    ug.login(c, *working)
    ug.send(d, D(2025, 1, 6), D(2025, 1, 13), D(2025, 1, 29))
    ug.send(e, *working, automatic=True)
    ug.send(e, *working, direction="received")
    ug.send(f, D(2025, 1, 22), D(2025, 2, 4))
    ug.send(g, D(2025, 2, 4))
    ug.send(h, D(2025, 1, 7), D(2025, 1, 21), D(2025, 2, 5))
    ug.login(h, D(2025, 1, 14))  # while suspended: not one of its days
    ug.send(shared, *working)
    return ug, dict(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h, shared=shared)


def test_regular_and_daily_users_worked_out_by_hand(tet_world) -> None:  # type: ignore[no-untyped-def]
    ug, x = tet_world
    rows = ug.accounts_by_address(TET_PERIOD)
    got = {k: (rows[v]["eligible_days"], rows[v]["eligible_weeks"], rows[v]["active_weeks"], rows[v]["active_days"],
               rows[v]["sent"], rows[v]["eligible"], rows[v]["regular"], rows[v]["daily"]) for k, v in x.items()}
    assert got == {
        # every working week (4/4) and one message: regular; 4 of 20 working days: not daily
        "a": (20, 4, 4, 4, 4, True, True, False),
        # sends in weeks 1 and 2, a login in week 3: 3/4 = 75%, exactly the threshold
        "b": (20, 4, 3, 3, 2, True, True, False),
        # logs in every working day but never sends: daily user, not a regular one
        "c": (20, 4, 4, 20, 0, True, False, True),
        # weeks 1 and 2, then a send in the Tết week, which is not a working week: 2/4
        "d": (20, 4, 2, 2, 3, True, False, False),
        # only automatic messages and received mail: never active
        "e": (20, 4, 0, 0, 0, True, False, False),
        # created 20 Jan: 10 working days (20-24 Jan, 3-7 Feb), 2 weeks, active in both
        "f": (10, 2, 2, 2, 2, True, True, False),
        # created 3 Feb: 5 working days, fewer than the 10 required: not eligible
        "g": (5, 1, 1, 1, 1, False, False, False),
        # suspended 13-19 Jan: 15 working days in 3 weeks, active in all 3; the login while suspended is not counted
        "h": (15, 3, 3, 3, 3, True, True, False),
        # a shared mailbox: counted apart
        "shared": (20, 4, 4, 20, 20, True, True, True),
    }


def test_agency_level_and_province_rates_worked_out_by_hand(tet_world) -> None:  # type: ignore[no-untyped-def]
    ug, _ = tet_world
    report = ug.report(TET_PERIOD, "agency")
    rows = {r["key"]: r for r in report.rows}
    pick = ("staff", "mailboxes", "coverage_pct", "eligible", "regular", "regular_pct", "daily", "daily_pct",
            "dormant", "shared", "shared_active")
    # Sở KH&ĐT: 5 personal mailboxes of 10 staff; a and b regular of 5 eligible; c daily; e dormant
    # (no activity since it was created in October); the shared mailbox apart.
    assert {k: rows["000.00.15.H62"][k] for k in pick} == dict(
        staff=10, mailboxes=5, coverage_pct=50.0, eligible=5, regular=2, regular_pct=40.0, daily=1, daily_pct=20.0,
        dormant=1, shared=1, shared_active=1)
    # Xã Đại Đồng: f, g, h have mailboxes (3 of 4 staff); f and h eligible and regular; g too new.
    assert {k: rows["000.00.71.H62"][k] for k in pick} == dict(
        staff=4, mailboxes=3, coverage_pct=75.0, eligible=2, regular=2, regular_pct=100.0, daily=0, daily_pct=0.0,
        dormant=0, shared=0, shared_active=0)
    # The province: 4 regular of 7 eligible = 57.1%; 1 daily = 14.3%; 8 mailboxes of 14 staff = 57.1%.
    total = rows["total"]
    assert (total["eligible"], total["regular"], total["regular_pct"], total["daily_pct"], total["coverage_pct"]) == \
        (7, 4, 57.1, 14.3, 57.1)
    levels = {r["key"]: (r["eligible"], r["regular"], r["regular_pct"]) for r in ug.report(TET_PERIOD, "level").rows}
    assert levels == {"province": (5, 2, 40.0), "commune": (2, 2, 100.0), "total": (7, 4, 57.1)}
    assert [r["key"] for r in ug.report(TET_PERIOD, "province").rows] == ["total"]
    only_commune = ug.report(TET_PERIOD, "agency", agency="000.00.71.H62").rows
    assert [(r["key"], r["regular"]) for r in only_commune] == [("000.00.71.H62", 2), ("total", 2)]
    hidden = {r["key"]: r for r in ug.report(TET_PERIOD, "agency", min_size=3).rows}
    assert hidden["000.00.71.H62"]["suppressed"] and hidden["000.00.71.H62"]["eligible"] == 2
    assert {hidden["000.00.71.H62"][k] for k in ("regular", "regular_pct", "daily", "daily_pct", "dormant")} == {None}
    assert not hidden["000.00.15.H62"]["suppressed"] and hidden["total"]["regular_pct"] == 57.1


def test_twenty_working_days_by_default_and_all_of_a_short_period(tet_world) -> None:  # type: ignore[no-untyped-def]
    ug, x = tet_world
    ug.stats = {}
    rows = ug.accounts_by_address(TET_PERIOD)
    assert [k for k, v in x.items() if rows[v]["eligible"]] == ["a", "b", "c", "d", "e", "shared"]
    # 3-9 Feb has 5 working days: an account needs all 5; g (created 3 Feb) has them
    feb = ug.accounts_by_address("2025-02-03..2025-02-09")
    assert feb[x["g"]]["eligible"] and feb[x["g"]]["regular"] and not feb[x["b"]]["regular"]


def test_make_up_saturdays_count_as_working_days(ug) -> None:  # type: ignore[no-untyped-def]
    # 21 Apr - 4 May 2025: Mon-Fri 21-25 Apr and Sat 26 Apr (made up for Fri 2 May) are working days;
    # 30 Apr, 1 and 2 May are holidays, so the second week has 28 and 29 Apr: 8 working days.
    ug.stats = {"min_eligible_days": 5}
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    k, m, n = (ug.account(name, "000.00.15.H62") for name in ("Nguyễn Văn Khoa", "Lê Thị Mai", "Trần Văn Nam"))
    ug.login(k, *(D(2025, 4, d) for d in (21, 22, 23, 24, 25, 26, 28)))  # 7 of 8 >= 80%: daily
    ug.login(m, *(D(2025, 4, d) for d in (21, 22, 23, 24, 25, 28)))  # 6 of 8 < 6.4: not daily
    ug.send(n, D(2025, 4, 26))  # the make-up Saturday is a working day of the first week
    rows = ug.accounts_by_address("2025-04-21..2025-05-04")
    assert [(rows[a]["eligible_days"], rows[a]["active_days"], rows[a]["daily"]) for a in (k, m, n)] == \
        [(8, 7, True), (8, 6, False), (8, 1, False)]
    # configured: Sat 3 May worked too, Tue 29 Apr off: 21-26 Apr (6) + 28 Apr + 3 May = 8 working days
    ug.stats = {"min_eligible_days": 5, "makeup_days": ("2025-05-03",), "extra_days_off": ("2025-04-29",)}
    rows = ug.accounts_by_address("2025-04-21..2025-05-04")
    assert [(rows[a]["eligible_days"], rows[a]["active_days"]) for a in (k, m)] == [(8, 7), (8, 6)]


def test_year_over_year_comparison(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    steady = ug.account("Nguyễn Văn An", "000.00.15.H62", spans=[(D(2023, 10, 1), None)])
    late = ug.account("Trần Thị Bình", "000.00.15.H62", spans=[(D(2023, 10, 1), None)])
    for year in (2024, 2025):
        ug.send(steady, *WorkCalendar(StatsSettings()).working_days(D(year, 11, 1), D(year, 11, 30)))
    ug.send(late, *WorkCalendar(StatsSettings()).working_days(D(2025, 11, 1), D(2025, 11, 30)))
    report = ug.report("2025-11", "level", compare=True)
    assert report.previous == parse_period("2024-11")
    total = report.rows[-1]
    assert (total["regular_pct"], total["regular_pct_prev"], total["change_pts"]) == (100.0, 50.0, 50.0)


# -- the rollup ------------------------------------------------------------------------------------------

def test_the_rollup_folds_each_event_in_once(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    a = ug.account("Nguyễn Văn An", "000.00.15.H62")
    ug.send(a, D(2025, 3, 3), D(2025, 3, 4))
    with ug.gm.session() as s, s.begin():
        first = usage_rollup.refresh(s, ug.settings)
        again = usage_rollup.refresh(s, ug.settings)
    assert (first.events, first.days, again.events) == (2, 2, 0)
    ug.send(a, D(2025, 3, 4), D(2025, 3, 5))  # after the watermark? no: dated in the past, recorded late
    now = datetime.now(timezone.utc)
    with ug.gm.session() as s, s.begin():
        account_id = accounts.get_account(s, a).id
        s.add(UsageEvent(at=now - timedelta(seconds=30), account_id=account_id, agency_id=accounts.get_account(s, a).agency_id,
                         direction="sent_external", recipients_internal=0, recipients_external=1, size=10,
                         automatic=False, message_hash="x" * 64))
    with ug.gm.session() as s, s.begin():
        late = usage_rollup.refresh(s, ug.settings, now=now)
        # an event is folded in once it has settled; events dated before the watermark are the
        # gateway's business to record on time (the watermark moves with the clock, not the events)
        assert late.events == 0
        later = usage_rollup.refresh(s, ug.settings, now=now + usage_rollup.SETTLE)
        assert later.events == 1
        days = dict(s.execute(select(UsageDaily.day, UsageDaily.sent).where(UsageDaily.account_id == account_id)).all())
        assert days[D(2025, 3, 3)] == 1 and days[D(2025, 3, 4)] == 1
        weekly = s.execute(select(UsageWeekly.active_days, UsageWeekly.working_days, UsageWeekly.sent)
                           .where(UsageWeekly.account_id == account_id, UsageWeekly.week == D(2025, 3, 3))).one()
        assert tuple(weekly) == (2, 2, 2)
        rebuilt = usage_rollup.rebuild(s, ug.settings, now=now + usage_rollup.SETTLE)
        # a rebuild reads every event again, the two recorded late included
        assert rebuilt.events == 5 and s.scalar(select(func.sum(UsageDaily.sent))) == 5


def test_logins_are_counted_once_and_a_calendar_change_reflags_days(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    a = ug.account("Nguyễn Văn An", "000.00.15.H62")
    assert ug.login(a, D(2025, 5, 3), D(2025, 5, 5)) == 2
    assert ug.login(a, D(2025, 5, 3), D(2025, 5, 5)) == 0
    with ug.gm.session() as s, s.begin():
        usage_rollup.refresh(s, ug.settings)
        assert dict(s.execute(select(UsageDaily.day, UsageDaily.working)).all()) == {D(2025, 5, 3): False, D(2025, 5, 5): True}
    ug.stats = {"makeup_days": ("2025-05-03",)}
    with ug.gm.session() as s, s.begin():
        assert usage_rollup.refresh(s, ug.settings).rebuilt
        assert dict(s.execute(select(UsageDaily.day, UsageDaily.working)).all()) == {D(2025, 5, 3): True, D(2025, 5, 5): True}
        assert s.scalar(select(UsageWeekly.working_days).where(UsageWeekly.week == D(2025, 4, 28))) == 1
        assert s.scalar(select(UsageRollupState.calendar)).startswith("Asia/Ho_Chi_Minh|")


def test_spans_follow_the_account_lifecycle(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    ug.agency("000.00.16.H62", "Sở Tài chính", "province")
    gm, settings = ug.gm, ug.settings
    with gm.session() as s, s.begin():
        account, _ = accounts.create_account(s, settings, gm.actor, accounts.NewAccount(agency="000.00.15.H62", full_name="Nguyễn Thị Lâm"))
        address = account.address
    for step in (lambda s: accounts.suspend(s, settings, gm.actor, address),
                 lambda s: accounts.restore(s, settings, gm.actor, address),
                 lambda s: accounts.transfer(s, settings, gm.actor, address, "000.00.16.H62"),
                 lambda s: accounts.retire(s, settings, gm.actor, address)):
        with gm.session() as s, s.begin():
            step(s)
    with gm.session() as s:
        spans = s.scalars(select(AccountSpan).where(AccountSpan.account_id == account.id).order_by(AccountSpan.id)).all()
        first, second = (agencies.get_agency(s, code).id for code in ("000.00.15.H62", "000.00.16.H62"))
    # created .. suspended, restored .. transferred (old agency), transferred .. retired (new agency)
    assert [sp.agency_id for sp in spans] == [first, first, second]
    assert all(sp.ended_at is not None for sp in spans)
    assert spans[0].ended_at <= spans[1].started_at and spans[1].ended_at == spans[2].started_at


# -- a property: more activity never lowers a rate ----------------------------------------------------------

DAYS = [D(2025, 3, 3) + timedelta(days=i) for i in range(28)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(activity=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(DAYS), st.booleans()), max_size=25),
       extra=st.tuples(st.integers(0, 3), st.sampled_from(DAYS), st.booleans()))
def test_more_activity_never_lowers_a_rate(property_world, activity, extra) -> None:  # type: ignore[no-untyped-def]
    ug, people = property_world
    with ug.gm.session() as s, s.begin():
        for table in (UsageEvent, LoginEvent, UsageDaily, UsageWeekly, UsageRollupState):
            s.execute(delete(table))

    def act(who: int, day: date, is_login: bool) -> None:
        (ug.login if is_login else ug.send)(people[who], day)

    def rates() -> tuple[float, float]:
        total = ug.report("2025-03-03..2025-03-30", "province").rows[0]
        return total["regular_pct"], total["daily_pct"]

    for who, day, is_login in activity:
        if (who, day, is_login) != extra:
            act(who, day, is_login)
    before = rates()
    act(*extra)
    after = rates()
    assert after[0] >= before[0] and after[1] >= before[1]


@pytest.fixture
def property_world(ug):  # type: ignore[no-untyped-def]
    ug.stats = {"min_eligible_days": 5}
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    people = [ug.account(f"Người {name}", "000.00.15.H62", spans=[(D(2024, 1, 1), None)] if i < 3 else
                         [(D(2025, 3, 10), D(2025, 3, 24))]) for i, name in enumerate(("An", "Bình", "Chi", "Dũng"))]
    return ug, people


def test_unknown_breakdown_is_refused(ug) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match="breakdown"):
        ug.report("2025", "district")


def test_a_period_not_over_is_cut_at_today(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    a = ug.account("Nguyễn Văn An", "000.00.15.H62")
    ug.send(a, *WorkCalendar(StatsSettings()).working_days(D(2025, 3, 3), D(2025, 3, 12)))
    # to Wed 12 Mar: 8 working days in 2 weeks, all active; the rest of March does not count against it
    report = ug.report("2025-03", "account", today=D(2025, 3, 12))
    assert report.period == Period("2025-03-01..2025-03-12", D(2025, 3, 1), D(2025, 3, 12))
    assert [(r["eligible_days"], r["active_days"], r["regular"]) for r in report.rows] == [(8, 8, True)]
    with pytest.raises(InvalidInput, match="has not started yet"):
        ug.report("2025-04", today=D(2025, 3, 12))


def test_a_new_time_zone_rebuilds_the_rollup(ug) -> None:  # type: ignore[no-untyped-def]
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province")
    a = ug.account("Nguyễn Văn An", "000.00.15.H62")
    with ug.gm.session() as s, s.begin():
        account_id = accounts.get_account(s, a).id
        at = datetime(2025, 5, 4, 23, 30, tzinfo=timezone.utc)  # 06:30 on Monday 5 May in Hà Nội
        usage_rollup.record_logins(s, ug.settings, [usage_rollup.Login(account_id, at, "imap", None, "h" * 64)])
        usage_rollup.refresh(s, ug.settings)
        assert s.scalars(select(UsageDaily.day)).all() == [D(2025, 5, 5)]
    ug.stats = {"timezone": "UTC"}
    with ug.gm.session() as s, s.begin():
        assert usage_rollup.refresh(s, ug.settings).rebuilt
        assert s.execute(select(UsageDaily.day, UsageDaily.working)).all() == [(D(2025, 5, 4), False)]
