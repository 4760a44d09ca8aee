"""``/api/v1``: the same reads and requests as the pages, for HR systems and scripts.

Every call carries ``Authorization: Bearer <token>``; a token acts as an administrator of its agency
and those below it (it cannot approve: approval needs a person signed in with two-step
verification). An object outside the token's agencies is 404, as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from portal.web import client_of, db, portal_of
from provisioning import overview, requests, roles
from provisioning.models import Account

bearer = HTTPBearer(auto_error=False, description="An API token made on the portal's API tokens page.")


class ErrorOut(BaseModel):
    error: str = Field(description="A stable code: not_found, invalid_input, conflict, unauthorized …")
    message: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Bad input (the message names the field and the fix)"},
    401: {"model": ErrorOut, "description": "Missing, unknown or revoked token"},
    404: {"model": ErrorOut, "description": "No such object within the token's agencies"},
    409: {"model": ErrorOut, "description": "The object is not in a state that allows this"},
}
router = APIRouter(prefix="/api/v1", tags=["v1"], responses=ERRORS)


class Api:
    """A request authenticated by a token: its session and principal."""

    def __init__(self, s: Session, principal: roles.Principal) -> None:
        self.s, self.principal = s, principal


def api(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        s: Session = Depends(db)) -> Api:
    principal = roles.principal_for_token(s, credentials.credentials, client_of(request)) if credentials else None
    if principal is None:
        raise HTTPException(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    if s.dirty:
        s.commit()  # last_used_at moved (at most once a minute)
    return Api(s, principal)


class AccountOut(BaseModel):
    address: str
    full_name: str
    kind: str
    status: str
    agency: str
    title: str | None = None
    employee_code: str | None = None
    aliases: list[str] = []
    created_at: str


def account_out(a: Account) -> AccountOut:
    return AccountOut(address=a.address, full_name=a.full_name, kind=a.kind, status=a.status, agency=a.agency.code,
                      title=a.title, employee_code=a.employee_code, aliases=[x.address for x in a.aliases],
                      created_at=a.created_at.isoformat())


class AccountPage(BaseModel):
    total: int
    page: int
    per_page: int
    items: list[AccountOut]


class Overview(BaseModel):
    code: str
    name: str
    level: str
    domain: str
    status: str
    staff_count: int | None
    accounts: dict[str, int]
    total: int
    active_personal: int
    used_recently: int
    used_recently_pct: float | None
    recent_days: int
    certificates_expiring: list[dict[str, str]]
    children: list[dict[str, str]]


AGENCY_CODE = r"^(\d{3}\.\d{2}\.\d{2}\.[A-Za-z]\d{2}|\d{2,5})$"
Address = Field(..., min_length=1, max_length=320, description="The account's address (or its local part)")


class NewOfficial(BaseModel):
    full_name: str = Field(..., min_length=1, max_length=128, description="As written, e.g. Nguyễn Thị Lâm")
    title: str | None = Field(None, max_length=128)
    phone: str | None = Field(None, max_length=32)
    employee_code: str | None = Field(None, max_length=64, description="The HR system's code: tells namesakes apart")
    personal_email: str | None = Field(None, max_length=254)


class CreateIn(BaseModel):
    """New accounts in an agency, one per official (checked as a staff-list upload would be)."""

    kind: Literal["create"]
    agency: str = Field(..., pattern=AGENCY_CODE, description="Agency code, e.g. 000.00.15.H62")
    rows: list[NewOfficial] = Field(..., min_length=1, max_length=5000)


class AccountChangeIn(BaseModel):
    """Suspend, restore, retire an account, or give it a new generated password."""

    kind: Literal["suspend", "restore", "retire", "reset_password"]
    address: str = Address


class TransferIn(BaseModel):
    kind: Literal["transfer"]
    address: str = Address
    agency: str = Field(..., pattern=AGENCY_CODE, description="The new agency's code")


class CertBindIn(BaseModel):
    kind: Literal["cert_bind"]
    address: str = Address
    certificate: str = Field(..., min_length=1, max_length=100_000, description="PEM text, or base64 DER")


RequestIn = Annotated[Union[CreateIn, AccountChangeIn, TransferIn, CertBindIn], Field(discriminator="kind")]


def payload_of(body: BaseModel) -> dict[str, Any]:
    """What the engine takes: the create rows numbered from 1, empty fields left out."""
    if isinstance(body, CreateIn):
        rows = [{"line": n, **row.model_dump(exclude_none=True)} for n, row in enumerate(body.rows, 1)]
        return {"agency": body.agency, "rows": rows}
    return body.model_dump(exclude={"kind"})


class RequestOut(BaseModel):
    id: int
    kind: str
    status: str
    agency: str
    summary: str
    requested_by: str
    source: str
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str | None = None
    outcome: dict[str, Any] | None = None
    credentials_available: bool = False


class RequestPage(BaseModel):
    total: int
    items: list[RequestOut]


Code = Path(..., max_length=32, description="Agency code, e.g. 000.00.15.H62")


@router.get("/agencies/{code}", response_model=Overview, summary="An agency's figures")
def get_agency(request: Request, code: str = Code, a: Api = Depends(api)) -> Any:
    return overview.agency_overview(a.s, roles.agency_in_scope(a.s, a.principal, code),
                                    cache=portal_of(request).usage_cache)


@router.get("/agencies/{code}/accounts", response_model=AccountPage, summary="Search an agency's accounts")
def list_accounts(code: str = Code, q: str = Query("", max_length=100),
                  status: Literal["active", "suspended", "retired", "purged"] | None = None,
                  page: int = Query(1, ge=1, le=100_000), per_page: int = Query(50, ge=1, le=200),
                  a: Api = Depends(api)) -> Any:
    found = roles.agency_in_scope(a.s, a.principal, code)
    result = overview.search_accounts(a.s, found, q=q, status=status, page=page, per_page=per_page)
    return AccountPage(total=result.total, page=result.page, per_page=result.per_page,
                       items=[account_out(x) for x in result.items])


@router.get("/accounts/{address}", response_model=AccountOut, summary="One account")
def get_account(address: str = Path(..., max_length=320), a: Api = Depends(api)) -> Any:
    return account_out(roles.account_in_scope(a.s, a.principal, address))


@router.get("/requests", response_model=RequestPage, summary="Requests of the token's agencies, newest first")
def list_requests(status: Literal["pending", "rejected", "applied", "failed"] | None = None,
                  page: int = Query(1, ge=1, le=100_000), per_page: int = Query(50, ge=1, le=200),
                  a: Api = Depends(api)) -> Any:
    items = requests.list_requests(a.s, a.principal, status=status, limit=per_page, offset=(page - 1) * per_page)
    return RequestPage(total=requests.count_requests(a.s, a.principal, status=status),
                       items=[requests.request_view(r) for r in items])


@router.post("/requests", response_model=RequestOut, status_code=201, summary="Submit a request")
def submit(body: RequestIn, background: BackgroundTasks, request: Request, a: Api = Depends(api)) -> Any:
    portal = portal_of(request)
    req = requests.submit(a.s, portal.settings, portal.box, a.principal, body.kind, payload_of(body))
    a.s.commit()
    background.add_task(portal.after_change)
    return requests.request_view(req)


@router.get("/requests/{request_id}", response_model=RequestOut, summary="One request")
def get_request(request_id: int = Path(..., ge=1, le=2**31 - 1), a: Api = Depends(api)) -> Any:
    return requests.request_view(requests.get_request(a.s, a.principal, request_id))


@router.post("/requests/{request_id}/credentials", summary="The credentials handover file (once)",
             response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def credentials(request: Request, request_id: int = Path(..., ge=1, le=2**31 - 1), a: Api = Depends(api)) -> Response:
    data = requests.credentials_csv(a.s, portal_of(request).box, a.principal, request_id)
    a.s.commit()
    return Response(data, media_type="text/csv; charset=utf-8")
