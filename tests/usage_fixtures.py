"""A small province for the usage-statistics tests: agencies, accounts with the history a test
gives them, and activity on chosen days (``ug``).

Accounts are created through the engine; their spans are then set to the days the test names (the
engine stamps spans with the current time, and the tests are about 2025). Sends are stored as the
gateway stores them; logins go through :func:`usage_rollup.record_logins`, as an import does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Sequence
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, insert

from provisioning import accounts, agencies, usage_rollup, usage_stats
from provisioning.accounts import NewAccount
from provisioning.models import AccountSpan, UsageEvent
from provisioning.workcalendar import parse_period
from tests.conftest import Govmail

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DOMAIN = "vinhphuc.gov.vn"


def local(day: date, hour: int = 9) -> datetime:
    return datetime.combine(day, time(hour), TZ)


@dataclass
class UsageWorld:
    gm: Govmail
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    _seq: Any = dataclasses.field(default_factory=lambda: itertools.count(1))

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return dataclasses.replace(self.gm.settings, stats=dataclasses.replace(self.gm.settings.stats, **self.stats))

    def agency(self, code: str, name: str, level: str, staff: int | None = None, parent: str | None = None) -> None:
        with self.gm.session() as s, s.begin():
            agencies.add_agency(s, self.settings, self.gm.actor, agencies.AgencyFields(
                code=code, name=name, level=level, parent=parent, domain=DOMAIN, staff_count=staff))

    def account(self, name: str, agency: str, spans: Sequence[tuple[date, date | None]] = ((date(2024, 10, 1), None),),
                kind: str = "personal") -> str:
        """Create an account usable on the given (from, until) local days (until: the day it stopped)."""
        address = f"u{next(self._seq)}@{DOMAIN}"
        with self.gm.session() as s, s.begin():
            account, _ = accounts.create_account(s, self.settings, self.gm.actor,
                                                 NewAccount(agency=agency, full_name=name, address=address, kind=kind))
            s.execute(delete(AccountSpan).where(AccountSpan.account_id == account.id))
            for first, until in spans:
                s.add(AccountSpan(account_id=account.id, agency_id=account.agency_id, started_at=local(first, 8),
                                  ended_at=None if until is None else local(until, 8)))
        return address

    def send(self, address: str, *days: date, automatic: bool = False, direction: str = "sent_internal") -> None:
        with self.gm.session() as s, s.begin():
            account = accounts.get_account(s, address)
            s.execute(insert(UsageEvent), [dict(
                at=local(day), account_id=account.id, agency_id=account.agency_id, direction=direction,
                recipients_internal=1, recipients_external=0, size=1000, automatic=automatic,
                message_hash=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),  # each send a new message
            ) for day in days])

    def login(self, address: str, *days: date) -> int:
        with self.gm.session() as s, s.begin():
            account_id = accounts.get_account(s, address).id
            return usage_rollup.record_logins(s, self.settings, [
                usage_rollup.Login(account_id, local(day, 10), "imap", "127.0.0.1",
                                   hashlib.sha256(f"{address}{day}".encode()).hexdigest()) for day in days])

    def report(self, period: str, by: str = "agency", **options: Any) -> usage_stats.UsageReport:
        with self.gm.session() as s, s.begin():
            return usage_stats.regular_use(s, self.settings, parse_period(period), by, **options)

    def accounts_by_address(self, period: str, **options: Any) -> dict[str, dict[str, Any]]:
        return {r["address"]: r for r in self.report(period, "account", **options).rows}


@pytest.fixture
def ug(gm: Govmail) -> UsageWorld:
    return UsageWorld(gm)
