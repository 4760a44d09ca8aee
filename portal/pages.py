"""The portal's pages: agencies, accounts, statistics, requests, the official's own account,
administration. Every handler asks the principal before it reads or changes anything; an object
outside the principal's reach is 'not found', whatever its id."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from portal.app import Redirect
from portal.web import Ctx, signed_in
from provisioning import overview, requests, roles, signin, usage_stats
from provisioning.errors import Conflict, GovmailError, InvalidInput, NotFound
from provisioning.models import Agency, Certificate
from provisioning.workcalendar import parse_period

router = APIRouter(include_in_schema=False)


def _top_agencies(ctx: Ctx) -> list[Agency]:
    """The agencies the principal administers whose parent they do not."""
    rows = ctx.s.scalars(select(Agency).order_by(Agency.code))
    return [a for a in rows if ctx.principal.administers(a.id)
            and (a.parent_id is None or not ctx.principal.administers(a.parent_id))]


@router.get("/", response_class=HTMLResponse)
def home(ctx: Ctx = Depends(signed_in)) -> Response:
    if not ctx.principal.is_admin:
        raise Redirect("/me")
    tops = _top_agencies(ctx)
    if len(tops) == 1 and not ctx.principal.province:
        raise Redirect(f"/agencies/{tops[0].code}")
    return ctx.render("agencies.html", agencies=tops, pending=requests.count_requests(ctx.s, ctx.principal, status="pending"))


# --- the official's own account --------------------------------------------------------------------


def _me_page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
    return ctx.render("me.html", status, policy=ctx.portal.settings.passwords, certificates=_certificates(ctx, ctx.account.id),
                      totp=signin.has_totp(ctx.s, ctx.account.id),
                      codes_left=signin.recovery_codes_left(ctx.s, ctx.account.id),
                      must_change=ctx.account.must_change_password,
                      is_admin=roles.is_admin(ctx.s, ctx.account.id), **values)


@router.get("/me", response_class=HTMLResponse)
def me(ctx: Ctx = Depends(signed_in)) -> Response:
    return _me_page(ctx)


@router.post("/me/password", response_class=HTMLResponse)
def change_password(current: str = Form(""), new: str = Form(""), again: str = Form(""), csrf: str = Form(""),
                    ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    if new != again:
        return _me_page(ctx, 400, error=ctx._("The two new passwords differ."))
    try:
        signin.change_password(ctx.s, ctx.portal.settings, ctx.principal.actor(), ctx.account.id, current, new,
                               keep_cookie=ctx.cookie)
    except InvalidInput as exc:
        ctx.s.rollback()
        return _me_page(ctx, 400, error=str(exc))
    ctx.s.commit()
    ctx.portal.after_change()  # the directory must accept the new password before the person tries it
    return _me_page(ctx, done=ctx._("Your password has been changed."))


@router.post("/me/totp/remove")
def remove_totp(csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    signin.remove_totp(ctx.s, ctx.principal.actor(), ctx.account.id)
    ctx.s.commit()
    return RedirectResponse("/me", status_code=303)


# --- agencies and accounts -------------------------------------------------------------------------


@router.get("/agencies/{code}", response_class=HTMLResponse)
def agency(code: str, ctx: Ctx = Depends(signed_in)) -> Response:
    found = roles.agency_in_scope(ctx.s, ctx.principal, code)
    return ctx.render("agency.html", agency=found, o=overview.agency_overview(ctx.s, found, cache=ctx.portal.usage_cache),
                      tab="overview")


@router.get("/agencies/{code}/accounts", response_class=HTMLResponse)
def agency_accounts(code: str, q: str = "", status: str = "", page: int = Query(1, ge=1, le=100000),
                    ctx: Ctx = Depends(signed_in)) -> Response:
    found = roles.agency_in_scope(ctx.s, ctx.principal, code)
    result = overview.search_accounts(ctx.s, found, q=q, status=status or None, page=page,
                                      per_page=ctx.portal.settings.portal.page_size)
    return ctx.render("accounts.html", agency=found, result=result, q=q, status=status, tab="accounts")


@router.get("/agencies/{code}/stats", response_class=HTMLResponse)
def agency_stats(code: str, period: str = "", ctx: Ctx = Depends(signed_in)) -> Response:
    found = roles.agency_in_scope(ctx.s, ctx.principal, code)
    label = period.strip() or str(date.today().year)
    error, report = None, None
    try:
        report = usage_stats.regular_use(ctx.s, ctx.portal.settings, parse_period(label), "agency", agency=found.code)
    except InvalidInput as exc:
        error = str(exc)
    return ctx.render("stats.html", agency=found, period=label, report=report, error=error, tab="stats")


@router.get("/accounts/{address}", response_class=HTMLResponse)
def account(address: str, ctx: Ctx = Depends(signed_in)) -> Response:
    found = roles.account_in_scope(ctx.s, ctx.principal, address)
    if not ctx.principal.administers(found.agency_id):
        raise Redirect("/me")
    return ctx.render("account.html", account=found, certificates=_certificates(ctx, found.id))


def _certificates(ctx: Ctx, account_id: str) -> list[Certificate]:
    return list(ctx.s.scalars(select(Certificate).where(Certificate.account_id == account_id,
                                                         Certificate.unbound_at.is_(None))))


# --- requests --------------------------------------------------------------------------------------


@router.get("/requests", response_class=HTMLResponse)
def request_list(status: str = "", page: int = Query(1, ge=1, le=100000), ctx: Ctx = Depends(signed_in)) -> Response:
    if not ctx.principal.is_admin:
        raise NotFound("page", "/requests")
    per = ctx.portal.settings.portal.page_size
    items = requests.list_requests(ctx.s, ctx.principal, status=status or None, limit=per, offset=(page - 1) * per)
    total = requests.count_requests(ctx.s, ctx.principal, status=status or None)
    return ctx.render("requests.html", items=items, status=status, page=page, pages=max(1, -(-total // per)),
                      total=total)


@router.get("/requests/new", response_class=HTMLResponse)
def new_request(agency: str = "", ctx: Ctx = Depends(signed_in)) -> Response:
    administered = _administered(ctx)
    if not administered:
        raise NotFound("page", "/requests/new")
    return ctx.render("request_new.html", agencies=administered, agency=agency, error=None, values={})


def _administered(ctx: Ctx) -> list[Agency]:
    return [a for a in ctx.s.scalars(select(Agency).where(Agency.status == "active").order_by(Agency.code))
            if ctx.principal.administers(a.id)]


@router.post("/requests/upload", response_class=HTMLResponse)
def upload(agency: str = Form(""), file: UploadFile = File(...), csrf: str = Form(""),
           ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    limit = ctx.portal.settings.portal.max_upload_bytes
    data = file.file.read(limit + 1)
    try:
        rows = requests.parse_upload(ctx.portal.settings, data, file.filename or "upload.csv")
        plan = requests.preview_create(ctx.s, ctx.portal.settings, ctx.principal, agency, rows)
    except (InvalidInput, Conflict) as exc:
        return ctx.render("request_new.html", 400, agencies=_administered(ctx), agency=agency, error=str(exc), values={})
    payload = json.dumps({"agency": agency, "rows": [{"line": line, **raw} for line, raw in rows]}, ensure_ascii=False)
    return ctx.render("upload_preview.html", agency=agency, plan=plan, payload=payload,
                      can_submit=plan.failed == 0 and plan.count("create") > 0)


@router.post("/requests")
def submit(background: BackgroundTasks, kind: str = Form(""), payload: str = Form(""), agency: str = Form(""),
           address: str = Form(""), full_name: str = Form(""), title: str = Form(""), phone: str = Form(""),
           employee_code: str = Form(""), personal_email: str = Form(""), target: str = Form(""),
           certificate: str = Form(""), csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    if kind == "create" and payload:
        try:
            body = json.loads(payload)
        except ValueError:
            raise InvalidInput("payload", None, "is not the form this portal sent", "upload the file again") from None
    elif kind == "create":
        body = {"agency": agency, "rows": [{"line": 1, "full_name": full_name, "title": title, "phone": phone,
                                            "employee_code": employee_code, "personal_email": personal_email}]}
    else:
        body = {"address": address, "agency": target, "certificate": certificate}
    try:
        req = requests.submit(ctx.s, ctx.portal.settings, ctx.portal.box, ctx.principal, kind, body)
    except InvalidInput as exc:
        if kind != "create" or payload:
            raise
        ctx.s.rollback()
        return ctx.render("request_new.html", 400, agencies=_administered(ctx), agency=agency, error=str(exc),
                          values={"full_name": full_name, "title": title, "phone": phone,
                                  "employee_code": employee_code, "personal_email": personal_email})
    ctx.s.commit()
    background.add_task(ctx.portal.after_change)
    return RedirectResponse(f"/requests/{req.id}?submitted=1", status_code=303)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_detail(request_id: int, ctx: Ctx = Depends(signed_in)) -> Response:
    req = requests.get_request(ctx.s, ctx.principal, request_id)
    view = requests.request_view(req)
    mine = (req.requester_account_id is not None and req.requester_account_id == ctx.account.id)
    return ctx.render("request.html", r=view, mine=mine,
                      submitted=ctx.request.query_params.get("submitted") == "1")


@router.post("/requests/{request_id}/approve")
def approve(request_id: int, csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    requests.approve(ctx.s, ctx.portal.settings, ctx.portal.box, ctx.principal, request_id)
    ctx.s.commit()
    ctx.portal.after_change()  # accounts published before the requester is told they exist
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@router.post("/requests/{request_id}/reject")
def reject(request_id: int, background: BackgroundTasks, reason: str = Form(""), csrf: str = Form(""),
           ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    requests.reject(ctx.s, ctx.portal.settings, ctx.principal, request_id, reason)
    ctx.s.commit()
    background.add_task(ctx.portal.after_change)
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@router.post("/requests/{request_id}/credentials")
def credentials(request_id: int, csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    data = requests.credentials_csv(ctx.s, ctx.portal.box, ctx.principal, request_id)
    ctx.s.commit()
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="request-{request_id}-credentials.csv"'})


# --- administration --------------------------------------------------------------------------------


@router.get("/admin", response_class=HTMLResponse)
def admin(ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.principal.require_province()
    return ctx.render("admin.html", roles=roles.list_roles(ctx.s), rules=requests.auto_approve_rules(ctx.s),
                      kinds=requests.KINDS, error=None)


@router.post("/admin/roles")
def grant_role(address: str = Form(""), agency: str = Form(""), action: str = Form("grant"), csrf: str = Form(""),
               ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    ctx.principal.require_province()
    try:
        if action == "revoke":
            roles.revoke(ctx.s, ctx.principal.actor(), address, agency or None)
        else:
            roles.grant(ctx.s, ctx.principal.actor(), address, agency or None)
    except GovmailError as exc:
        ctx.s.rollback()
        return ctx.render("admin.html", 400, roles=roles.list_roles(ctx.s), rules=requests.auto_approve_rules(ctx.s),
                          kinds=requests.KINDS, error=str(exc))
    ctx.s.commit()
    return RedirectResponse("/admin", status_code=303)


@router.post("/admin/auto-approve")
def auto_approve(agency: str = Form(""), kind: str = Form(""), enabled: bool = Form(True), csrf: str = Form(""),
                 ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    requests.set_auto_approve(ctx.s, ctx.principal, agency, kind, enabled)
    ctx.s.commit()
    return RedirectResponse("/admin", status_code=303)


@router.get("/tokens", response_class=HTMLResponse)
def tokens(ctx: Ctx = Depends(signed_in)) -> Response:
    if not ctx.principal.is_admin:
        raise NotFound("page", "/tokens")
    return ctx.render("tokens.html", tokens=roles.list_tokens(ctx.s, ctx.principal), agencies=_administered(ctx),
                      secret=None)


@router.post("/tokens", response_class=HTMLResponse)
def create_token(agency: str = Form(""), name: str = Form(""), csrf: str = Form(""),
                 ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    try:
        found = roles.agency_in_scope(ctx.s, ctx.principal, agency)
        _, secret = roles.create_token(ctx.s, ctx.principal, found.code, name)
    except roles.Forbidden:
        raise NotFound("agency", agency) from None
    return ctx.render("tokens.html", tokens=roles.list_tokens(ctx.s, ctx.principal), agencies=_administered(ctx),
                      secret=secret)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, csrf: str = Form(""), ctx: Ctx = Depends(signed_in)) -> Response:
    ctx.check_csrf(csrf)
    roles.revoke_token(ctx.s, ctx.principal, token_id)
    ctx.s.commit()
    return RedirectResponse("/tokens", status_code=303)
