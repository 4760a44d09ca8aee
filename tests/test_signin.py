"""Portal sign-in: passwords, throttling, TOTP, recovery codes, sessions, password change (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from sqlalchemy import func, select

from provisioning import accounts, agencies, roles, secretbox, signin
from provisioning.accounts import NewAccount
from provisioning.audit import Actor
from provisioning.errors import Conflict, InvalidInput
from provisioning.models import Account, AuditEntry, AuthFailure, PortalSession, TotpCredential
from provisioning.signin import SigninResult

PROVINCE, SNV = "000.00.00.H62", "000.00.16.H62"
PW = "Correct-Horse-42"
T0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)  # a multiple of 30 s


@dataclass
class Env:
    gm: object
    box: secretbox.SecretBox
    an: str  # account ids: an (chosen password PW), binh (same), cuong (generated initial password)
    binh: str
    cuong: str
    cuong_initial: str

    def run(self, fn, *args, **kw):
        """``fn(session, *args)`` in one committed transaction."""
        with self.gm.session() as s, s.begin():
            return fn(s, *args, **kw)

    def password(self, login, password, client="10.0.0.1", now=T0, settings=None):
        return self.run(signin.check_password, settings or self.gm.settings, login, password, client, now)

    def code(self, account_id, code, client="10.0.0.1", now=T0):
        return self.run(signin.verify_second_factor, self.gm.settings, self.box, account_id, code, client, now)

    def enrol(self, account_id, now=T0):
        secret = self.run(signin.start_enrolment, self.gm.settings, self.box, account_id)
        totp = pyotp.TOTP(secret)
        return totp, self.run(signin.confirm_enrolment, self.gm.settings, self.box, account_id, totp.at(now), now)

    def open(self, account_id, stage="full", now=T0):
        return self.run(signin.open_session, self.gm.settings, account_id, stage, "10.0.0.1", now)

    def load(self, cookie, now):
        return self.run(signin.load_session, self.gm.settings, cookie, now)


@pytest.fixture
def env(gm):
    with gm.session() as s, s.begin():
        for code, name, parent, short in ((PROVINCE, "UBND tỉnh Vĩnh Phúc", None, None),
                                          (SNV, "Sở Nội vụ", PROVINCE, "snv")):
            agencies.add_agency(s, gm.settings, gm.actor, agencies.parse_fields(gm.settings, {
                "code": code, "name": name, "level": "province", "parent": parent,
                "domain": "vinhphuc.gov.vn" if parent is None else None, "short_name": short}))
        an, _ = accounts.create_account(s, gm.settings, gm.actor, NewAccount(SNV, "Nguyễn Văn An"), PW)
        binh, _ = accounts.create_account(s, gm.settings, gm.actor, NewAccount(SNV, "Trần Thị Bình"), PW)
        cuong, initial = accounts.create_account(s, gm.settings, gm.actor, NewAccount(SNV, "Lê Văn Cường"))
    return Env(gm, secretbox.load(gm.settings), an.id, binh.id, cuong.id, initial)


def wrong_code(totp, now):
    """A 6-digit code that is none of the codes accepted around ``now``."""
    near = {totp.at(now + timedelta(seconds=d)) for d in (-30, 0, 30)}
    return next(c for c in (f"{i:06d}" for i in range(10)) if c not in near)


def failures(env, key):
    return env.run(lambda s: s.scalar(select(func.count()).where(AuthFailure.key == key)))


def test_password_right_wrong_unknown_and_suspended(env):
    assert env.password("annv@vinhphuc.gov.vn", PW) == SigninResult("ok", env.an, "full")
    assert env.password(" ANNV ", PW) == SigninResult("ok", env.an, "full")  # bare local part, any case
    assert env.password("annv", PW + "x") == SigninResult("failed")
    assert failures(env, f"portal:account:{env.an}") == 1 and failures(env, "portal:client:10.0.0.1") == 1
    assert env.password("NoSuch@vinhphuc.gov.vn", PW) == SigninResult("failed")
    assert failures(env, "portal:login:nosuch@vinhphuc.gov.vn") == 1
    env.run(accounts.suspend, env.gm.settings, env.gm.actor, "binhtt")
    assert env.password("binhtt", PW) == SigninResult("failed")  # the right password, but suspended


def test_lockout_per_account_and_it_lifts_after_the_window(env):
    limit, window = env.gm.settings.portal.signin_failures_per_account, env.gm.settings.portal.signin_failure_window
    for i in range(limit):
        assert env.password("annv", "wrong password", client=f"10.0.1.{i}").status == "failed"
    assert env.password("annv", PW, client="10.0.2.1") == SigninResult("locked")  # any client
    assert env.password("annv", "wrong again", client="10.0.2.1") == SigninResult("locked")
    assert failures(env, f"portal:account:{env.an}") == limit  # locked: not counted again
    assert env.password("binhtt", PW, client="10.0.2.1").status == "ok"  # other accounts unaffected
    assert env.password("annv", PW, now=T0 + timedelta(seconds=window - 1)).status == "locked"
    assert env.password("annv", PW, now=T0 + timedelta(seconds=window + 1)).status == "ok"


def test_lockout_per_client(env):
    settings = replace(env.gm.settings, portal=replace(env.gm.settings.portal, signin_failures_per_client=3))
    for login in ("nobody1", "nobody2", "binhtt"):
        assert env.password(login, "wrong password", client="10.9.9.9", settings=settings).status == "failed"
    assert env.password("annv", PW, client="10.9.9.9", settings=settings) == SigninResult("locked")
    assert env.password("annv", PW, client="10.9.9.8", settings=settings).status == "ok"


def test_stage_after_password(env):
    assert env.password("annv", PW).stage == "full"
    env.run(roles.grant, env.gm.actor, "binhtt", SNV)
    assert env.password("binhtt", PW) == SigninResult("ok", env.binh, "enrol")
    env.run(signin.start_enrolment, env.gm.settings, env.box, env.an)
    assert env.password("annv", PW).stage == "full"  # a pending enrolment is not TOTP yet
    env.enrol(env.binh)
    assert env.password("binhtt", PW).stage == "totp"


def test_enrolment_stores_the_secret_encrypted_and_returns_recovery_codes(env):
    settings, box = env.gm.settings, env.box
    first = env.run(signin.start_enrolment, settings, box, env.an)
    secret = env.run(signin.start_enrolment, settings, box, env.an)  # replaces the unconfirmed one
    assert first != secret and re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert env.run(signin.pending_secret, box, env.an) == secret
    row = env.run(lambda s: s.get(TotpCredential, env.an))
    assert secret.encode() not in row.secret_encrypted and box.decrypt(row.secret_encrypted) == secret.encode()
    assert secret not in repr(row)
    totp = pyotp.TOTP(secret)
    with pytest.raises(InvalidInput, match="is not the code your app shows now") as err:
        env.run(signin.confirm_enrolment, settings, box, env.an, wrong_code(totp, T0), T0)
    assert err.value.field == "code"
    with pytest.raises(InvalidInput):  # the first secret no longer counts
        env.run(signin.confirm_enrolment, settings, box, env.an, pyotp.TOTP(first).at(T0), T0)
    assert not env.run(signin.has_totp, env.an)
    codes = env.run(signin.confirm_enrolment, settings, box, env.an, totp.at(T0), T0)
    assert len(codes) == settings.portal.recovery_codes == len(set(codes))
    assert all(re.fullmatch(r"[a-z2-7]{5}-[a-z2-7]{5}", c) for c in codes)
    assert env.run(signin.has_totp, env.an) and env.run(signin.recovery_codes_left, env.an) == len(codes)
    assert env.run(signin.pending_secret, box, env.an) is None
    audit = env.run(lambda s: s.scalars(select(AuditEntry).where(AuditEntry.action == "account.totp_enrol")).one())
    assert audit.object_label == "annv@vinhphuc.gov.vn"
    assert not any(c.replace("-", "") in (audit.after or "") or c in (audit.after or "") for c in codes)
    assert secret not in (audit.after or "")
    with pytest.raises(Conflict, match="already enrolled"):
        env.run(signin.start_enrolment, settings, box, env.an)
    with pytest.raises(Conflict, match="no TOTP enrolment is pending"):
        env.run(signin.confirm_enrolment, settings, box, env.an, totp.at(T0), T0)
    uri = signin.provisioning_uri(settings, "annv@vinhphuc.gov.vn", secret)
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri and "issuer=govmail" in uri
    svg = signin.qr_svg(uri)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "<?xml" not in svg


def test_totp_code_is_accepted_once_and_never_an_older_step(env):
    totp, _ = env.enrol(env.an)  # confirmed with the code of T0's step
    assert env.code(env.an, totp.at(T0), now=T0 + timedelta(seconds=10)) == SigninResult("failed")  # used
    now = T0 + timedelta(seconds=60)
    assert env.code(env.an, totp.at(now), now=now) == SigninResult("ok", env.an, "full")
    assert env.code(env.an, totp.at(now), now=now) == SigninResult("failed")  # replay
    assert env.code(env.an, totp.at(now - timedelta(seconds=30)), now=now).status == "failed"  # older step
    assert env.code(env.an, totp.at(now + timedelta(seconds=30)), now=now).status == "ok"  # clock drift +1 step
    later = T0 + timedelta(seconds=300)
    assert env.code(env.an, totp.at(later - timedelta(seconds=60)), now=later).status == "failed"  # 2 steps old
    assert env.code(env.an, " ".join(totp.at(later)), now=later).status == "ok"  # spaces are ignored
    assert env.code(env.binh, totp.at(later), now=later).status == "failed"  # binh has no TOTP
    assert env.code(env.an, "١٢٣٤٥٦", now=later).status == "failed"  # digits, but not ASCII ones


def test_one_code_used_concurrently_succeeds_once(env):
    totp, _ = env.enrol(env.an)
    now = T0 + timedelta(seconds=30)
    results = {}

    def second():
        results["second"] = env.code(env.an, totp.at(now), client="10.0.0.2", now=now)

    with env.gm.session() as s, s.begin():
        results["first"] = signin.verify_second_factor(s, env.gm.settings, env.box, env.an, totp.at(now), "10.0.0.1", now)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first transaction's lock
    thread.join(30)
    assert results == {"first": SigninResult("ok", env.an, "full"), "second": SigninResult("failed")}


def test_recovery_code_works_once_and_wrong_codes_lead_to_lockout(env):
    totp, codes = env.enrol(env.an)
    now = T0 + timedelta(seconds=30)
    assert env.code(env.an, codes[0].upper().replace("-", " "), now=now) == SigninResult("ok", env.an, "full")
    assert env.run(signin.recovery_codes_left, env.an) == len(codes) - 1
    assert env.code(env.an, codes[0], now=now).status == "failed"  # used up
    assert env.code(env.binh, codes[1], now=now).status == "failed"  # another account's code
    assert env.code(env.an, "aaaaa-bbbbb", now=now).status == "failed"
    assert env.code(env.an, "12345", now=now).status == "failed"
    assert env.password("annv", "wrong password", now=now).status == "failed"  # both factors count together
    assert env.code(env.an, wrong_code(totp, now), now=now).status == "failed"
    assert failures(env, f"portal:account:{env.an}") == env.gm.settings.portal.signin_failures_per_account
    assert env.code(env.an, totp.at(now), now=now) == SigninResult("locked")
    assert env.code(env.an, codes[2], client="10.7.7.7", now=now) == SigninResult("locked")
    assert env.password("annv", PW, now=now) == SigninResult("locked")
    assert env.run(signin.recovery_codes_left, env.an) == len(codes) - 1  # not spent while locked


def test_remove_totp(env):
    env.enrol(env.an)
    official = Actor(name="annv@vinhphuc.gov.vn", source="portal")
    env.run(signin.remove_totp, official, env.an)
    assert not env.run(signin.has_totp, env.an) and env.run(signin.recovery_codes_left, env.an) == 0
    assert env.password("annv", PW).stage == "full"
    assert env.run(lambda s: s.scalar(select(AuditEntry.actor).where(AuditEntry.action == "account.totp_remove"))) \
        == "annv@vinhphuc.gov.vn"
    with pytest.raises(Conflict, match="no TOTP"):
        env.run(signin.remove_totp, official, env.an)
    env.run(roles.grant, env.gm.actor, "binhtt", None)
    env.enrol(env.binh)
    with pytest.raises(Conflict, match="administrators must keep TOTP"):
        env.run(signin.remove_totp, env.gm.actor, env.binh)
    assert env.run(signin.has_totp, env.binh)


def test_session_idle_and_absolute_expiry(env):
    idle = env.gm.settings.portal.session_idle_minutes
    cookie = env.open(env.an)
    assert env.load(cookie, T0 + timedelta(seconds=30)).last_seen_at == T0  # not written within a minute
    assert env.load(cookie, T0 + timedelta(minutes=idle - 1)).last_seen_at == T0 + timedelta(minutes=idle - 1)
    assert env.load(cookie, T0 + timedelta(minutes=2 * idle - 1)) is not None
    assert env.load(cookie, T0 + timedelta(minutes=3 * idle)) is None  # idle too long
    assert env.run(lambda s: s.scalar(select(func.count()).select_from(PortalSession))) == 0
    assert env.load("not-a-cookie", T0) is None and env.load(None, T0) is None
    # A session kept busy still ends at its absolute expiry.
    cookie = env.open(env.an)
    end = T0 + timedelta(hours=env.gm.settings.portal.session_max_hours)
    now = T0
    while now + timedelta(minutes=idle - 1) <= end:
        now += timedelta(minutes=idle - 1)
        assert env.load(cookie, now) is not None
    assert env.load(cookie, end + timedelta(seconds=1)) is None


def test_session_of_a_suspended_account_is_gone(env):
    cookie = env.open(env.an)
    assert env.load(cookie, T0).account_id == env.an
    env.run(accounts.suspend, env.gm.settings, env.gm.actor, "annv")
    assert env.load(cookie, T0 + timedelta(minutes=1)) is None
    env.run(accounts.restore, env.gm.settings, env.gm.actor, "annv")
    assert env.load(cookie, T0 + timedelta(minutes=2)) is None  # deleted, not merely refused


def test_advance_rotates_the_cookie_and_csrf(env):
    cookie = env.open(env.an, stage="totp")
    old = env.load(cookie, T0)
    assert old.stage == "totp" and repr(old) == f"PortalSession(account_id={env.an!r}, stage='totp')"
    new_cookie = env.run(lambda s: signin.advance(s, env.gm.settings, s.merge(old), "full", T0 + timedelta(minutes=1)))
    assert new_cookie != cookie
    assert env.load(cookie, T0 + timedelta(minutes=1)) is None
    new = env.load(new_cookie, T0 + timedelta(minutes=1))
    assert (new.stage, new.created_at, new.expires_at) == ("full", old.created_at, old.expires_at)
    assert new.csrf != old.csrf and new.id != old.id
    assert signin.csrf_ok(new, new.csrf)
    assert not signin.csrf_ok(new, old.csrf) and not signin.csrf_ok(new, None) and not signin.csrf_ok(new, "")
    assert not signin.csrf_ok(new, "é" * 43)


def test_close_sessions_and_purge(env):
    one, two, three = env.open(env.an), env.open(env.an), env.open(env.an)
    env.open(env.binh, now=T0 - timedelta(hours=13))  # expired an hour ago
    env.run(signin.close_session, one)
    assert env.load(one, T0) is None and env.load(two, T0) is not None
    assert env.run(signin.close_other_sessions, env.an, three) == 1
    assert env.load(two, T0) is None and env.load(three, T0) is not None
    assert env.run(signin.purge_expired, T0) == 1
    assert env.run(lambda s: s.scalars(select(PortalSession.account_id)).all()) == [env.an]


def test_change_password(env):
    settings, actor = env.gm.settings, env.gm.actor
    keep, other = env.open(env.cuong), env.open(env.cuong)
    new = "Blue-Lotus-2025!"
    with pytest.raises(InvalidInput) as err:
        env.run(signin.change_password, settings, actor, env.cuong, "not it", new, keep)
    assert err.value.field == "current_password" and "not it" not in str(err.value)
    with pytest.raises(InvalidInput) as err:
        env.run(signin.change_password, settings, actor, env.cuong, env.cuong_initial, env.cuong_initial, keep)
    assert err.value.field == "new_password" and env.cuong_initial not in str(err.value)
    with pytest.raises(InvalidInput) as err:
        env.run(signin.change_password, settings, actor, env.cuong, env.cuong_initial, "short", keep)
    assert err.value.field == "password"
    assert env.load(other, T0) is not None  # nothing changed by the refusals
    env.run(signin.change_password, settings, actor, env.cuong, env.cuong_initial, new, keep)
    account = env.run(lambda s: s.get(Account, env.cuong))
    assert not account.must_change_password and account.password_hash.startswith("{ARGON2}")
    assert env.load(keep, T0) is not None and env.load(other, T0) is None
    assert env.password("cuonglv", new).status == "ok" and env.password("cuonglv", env.cuong_initial).status == "failed"
    assert env.gm.sync().failed == 0
    assert env.gm.slapd_bind_ok("cuonglv", new) and not env.gm.slapd_bind_ok("cuonglv", env.cuong_initial)
