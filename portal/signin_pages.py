"""Sign-in: password, then a TOTP or recovery code; TOTP enrolment; sign-out.

Both steps are throttled per account and per client address (failures of either count together);
the session id is replaced at every step, so a session fixed before sign-in is worth nothing.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from portal.app import CsrfRefused, Redirect
from portal.web import Ctx, client_of, db, live_session, portal_of, render, set_session_cookie, signed_in
from provisioning import signin
from provisioning.errors import Conflict, InvalidInput
from provisioning.models import PortalSession

router = APIRouter(include_in_schema=False)
LOGIN_CSRF = "govmail_login_csrf"


def _locked_minutes(request: Request) -> int:
    return max(1, round(portal_of(request).settings.portal.signin_failure_window / 60))


def _login_page(request: Request, error: str | None = None, status: int = 200, login: str = "") -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(32)
    response = render(request, "login.html", {"csrf": token, "error": error, "login": login,
                                              "expired": request.query_params.get("expired") == "1",
                                              "minutes": _locked_minutes(request)}, status)
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", path="/",
                        secure=portal_of(request).settings.portal.cookie_secure)
    return response


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
def login(request: Request, login: str = Form(""), password: str = Form(""), csrf: str = Form(""),
          s: Session = Depends(db)) -> Response:
    expected = request.cookies.get(LOGIN_CSRF)
    if not expected or not secrets.compare_digest(expected, csrf):
        raise CsrfRefused()
    portal = portal_of(request)
    result = signin.check_password(s, portal.settings, login[:320], password, client_of(request))
    if result.status != "ok" or result.account_id is None:
        s.commit()  # the failure counts toward the lockout
        error = "locked" if result.status == "locked" else "wrong"
        return _login_page(request, error, 429 if error == "locked" else 401, login[:320])
    signin.purge_expired(s)  # sign-ins keep the session table small
    cookie = signin.open_session(s, portal.settings, result.account_id, result.stage or "full", client_of(request))
    s.commit()
    target = {"totp": "/login/totp", "enrol": "/enrol"}.get(result.stage or "", "/")
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(portal, response, cookie)
    response.delete_cookie(LOGIN_CSRF, path="/")
    return response


def _pending(request: Request, s: Session) -> PortalSession:
    """The session of a sign-in waiting for its code. :raises Redirect: none."""
    _, ps = live_session(request, s)
    if ps.stage != "totp":
        raise Redirect("/")
    return ps


@router.get("/login/totp")
def totp_form(request: Request, s: Session = Depends(db)) -> HTMLResponse:
    ps = _pending(request, s)
    return render(request, "totp.html", {"csrf": ps.csrf, "error": None})


@router.post("/login/totp")
def totp(request: Request, code: str = Form(""), csrf: str = Form(""), s: Session = Depends(db)) -> Response:
    portal = portal_of(request)
    ps = _pending(request, s)
    if not signin.csrf_ok(ps, csrf):
        raise CsrfRefused()
    result = signin.verify_second_factor(s, portal.settings, portal.box, ps.account_id, code[:64], client_of(request))
    if result.status != "ok":
        s.commit()
        error = "locked" if result.status == "locked" else "wrong"
        return render(request, "totp.html", {"csrf": ps.csrf, "error": error, "minutes": _locked_minutes(request)},
                      429 if error == "locked" else 401)
    cookie = signin.advance(s, portal.settings, ps, "full")
    s.commit()
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(portal, response, cookie)
    return response


@router.get("/enrol")
def enrol_form(ctx: Ctx = Depends(signed_in)) -> Response:
    if signin.has_totp(ctx.s, ctx.account.id):
        raise Redirect("/me")
    return _enrol_page(ctx)


def _enrol_page(ctx: Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
    portal = ctx.portal
    # A wrong code keeps the key the person has already scanned.
    secret = (error and signin.pending_secret(ctx.s, portal.box, ctx.account.id)) \
        or signin.start_enrolment(ctx.s, portal.settings, portal.box, ctx.account.id)
    uri = signin.provisioning_uri(portal.settings, ctx.account.address, secret)
    return ctx.render("enrol.html", status, qr=signin.qr_svg(uri), secret=secret, error=error,
                      required=ctx.ps.stage == "enrol")


@router.post("/enrol")
def enrol(code: str = Form(""), csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    portal = ctx.portal
    try:
        codes = signin.confirm_enrolment(ctx.s, portal.settings, portal.box, ctx.account.id, code[:64])
    except (InvalidInput, Conflict):
        ctx.s.rollback()
        return _enrol_page(ctx, "wrong", 400)
    cookie = ctx.cookie
    if ctx.ps.stage != "full":
        cookie = signin.advance(ctx.s, portal.settings, ctx.ps, "full")
    response = ctx.render("recovery_codes.html", codes=codes)
    set_session_cookie(portal, response, cookie)
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(""), s: Session = Depends(db)) -> Response:
    portal = portal_of(request)
    cookie = request.cookies.get(signin.SESSION_COOKIE)
    ps = signin.load_session(s, portal.settings, cookie)
    if ps is not None and not signin.csrf_ok(ps, csrf):
        raise CsrfRefused()
    signin.close_session(s, cookie)
    s.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(signin.SESSION_COOKIE, path="/")
    return response
