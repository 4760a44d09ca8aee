"""What every page handler shares: the database session, the signed-in person, CSRF, rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from portal import i18n
from portal.app import CsrfRefused, Portal, Redirect
from provisioning import signin
from provisioning.models import Account, PortalSession
from provisioning.roles import Principal, principal_for_account

# Pages an official with a generated (initial) password may open before choosing their own.
FIRST_PASSWORD_PAGES = ("/me", "/me/password", "/logout")


def portal_of(request: Request) -> Portal:
    return request.app.state.portal


async def db(request: Request) -> AsyncIterator[Session]:
    """One session per request; handlers commit what they change."""
    async with portal_of(request).session() as session:
        yield session


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def set_session_cookie(portal: Portal, response: Response, value: str) -> None:
    response.set_cookie(signin.SESSION_COOKIE, value, httponly=True, secure=portal.settings.portal.cookie_secure,
                        samesite="strict", path="/")


def render(request: Request, name: str, values: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A page in the visitor's language (``?lang=`` is remembered in a cookie)."""
    portal = portal_of(request)
    lang = i18n.language(request)
    response = portal.templates.TemplateResponse(
        request, name, {"_": i18n.translator(lang), "lang": lang, "me": None, "principal": None, **values},
        status_code=status)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, lang, samesite="lax", secure=portal.settings.portal.cookie_secure,
                            max_age=365 * 86400, path="/")
    return response


@dataclass
class Ctx:
    """A signed-in request: the session row, the account and what it may do."""

    request: Request
    s: Session
    portal: Portal
    ps: PortalSession
    cookie: str
    account: Account
    principal: Principal

    @property
    def _(self) -> Callable[..., str]:
        return i18n.translator(i18n.language(self.request))

    def check_csrf(self, value: str | None) -> None:
        """:raises CsrfRefused: the form's token is not this session's."""
        if not signin.csrf_ok(self.ps, value):
            raise CsrfRefused()

    def render(self, name: str, http_status: int = 200, **values: Any) -> HTMLResponse:
        """Commit the request's work, then render ``name`` with the signed-in person's details."""
        self.s.commit()
        return render(self.request, name, {"me": self.account, "principal": self.principal,
                                           "csrf": self.ps.csrf, **values}, http_status)


def live_session(request: Request, s: Session) -> tuple[str, PortalSession]:
    """The request's cookie and its live session row (at any sign-in stage).

    :raises Redirect: no session, or one that has ended (to /login).
    """
    cookie = request.cookies.get(signin.SESSION_COOKIE)
    ps = signin.load_session(s, portal_of(request).settings, cookie)
    if ps is None or s.is_modified(ps):
        s.commit()  # an ended session's row is gone, or last_seen_at moved
    if ps is None or cookie is None:
        raise Redirect("/login?expired=1" if cookie else "/login")
    return cookie, ps


def signed_in(request: Request, s: Session = Depends(db)) -> Ctx:
    """The signed-in person, or a redirect to the step of sign-in they are at.

    :raises Redirect: not signed in (to /login), code pending (/login/totp), administrator without
        TOTP (/enrol), or an initial password still to change (/me).
    """
    cookie, ps = live_session(request, s)
    if ps.stage == "totp":
        raise Redirect("/login/totp")
    if ps.stage == "enrol" and request.url.path != "/enrol":
        raise Redirect("/enrol")
    account = s.get(Account, ps.account_id)
    assert account is not None  # load_session returns only sessions of active accounts
    if account.must_change_password and request.url.path not in FIRST_PASSWORD_PAGES + ("/enrol",):
        raise Redirect("/me")
    return Ctx(request, s, portal_of(request), ps, cookie, account,
               principal_for_account(s, account, client_of(request)))
