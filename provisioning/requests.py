"""Change requests: agency administrators (and their API tokens) ask, province administrators decide.

* **Submit** checks a request as far as it can at once (scope, lifecycle state, every row of an
  HR file, the certificate file) and stores it ``pending``; province administrators are notified.
  An auto-approve rule for the request's agency or one above it decides it at once.
* **Approve** applies the request with the engine functions, in the approver's transaction, inside
  a savepoint: when the engine refuses (the account was suspended meanwhile, an address was taken),
  nothing of it is written and the request becomes ``failed`` with the reason. **Reject** needs a
  reason. The requester is notified of every decision.
* Initial passwords go only into the encrypted handover file, which the requester downloads once.

Scope: a principal sees and asks for changes of the agencies it administers; anything else
answers :class:`NotFound`, so guessing ids or addresses tells nothing. Every function works in the
caller's transaction and never commits.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import unicodedata
from datetime import datetime
from itertools import islice
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning import accounts, audit, bulk, certificates, notify, roles, trust
from provisioning.accounts import NewAccount
from provisioning.agencies import get_agency
from provisioning.audit import Actor
from provisioning.config import Settings
from provisioning.csvinput import decode_bytes, parse_rows
from provisioning.errors import Conflict, GovmailError, InvalidInput, NotFound
from provisioning.models import Account, Agency, AutoApproveRule, ChangeRequest, utcnow
from provisioning.roles import Principal
from provisioning.secretbox import SecretBox

KINDS = ("create", "suspend", "restore", "retire", "transfer", "reset_password", "cert_bind")
STATUSES = ("pending", "rejected", "applied", "failed")
# The account states each account request applies to (checked at submit, again by the engine).
ALLOWED = {"suspend": ("active",), "restore": ("suspended", "retired"), "retire": ("active", "suspended"),
           "transfer": ("active", "suspended", "retired"), "reset_password": ("active", "suspended"),
           "cert_bind": ("active", "suspended")}
VERBS = {"suspend": "suspend", "restore": "restore", "retire": "retire", "transfer": "transfer",
         "reset_password": "reset the password of", "cert_bind": "bind a certificate to"}
MAX_REASON = 2000
SHOWN_LINES = 5


# --- HR files ------------------------------------------------------------------------------------


def parse_upload(settings: Settings, data: bytes, filename: str) -> list[tuple[int, dict[str, str]]]:
    """Rows of an uploaded HR file, read like ``govmail bulk`` reads one (any encoding, delimiter
    and header language).

    :raises InvalidInput: empty, larger than ``[portal] max_upload_bytes``, more rows than
        ``max_upload_rows``, unreadable, or without a name column (each naming the file).
    """
    limits = settings.portal
    if len(data) > limits.max_upload_bytes:
        raise InvalidInput(filename, None, f"is larger than {limits.max_upload_bytes} bytes",
                           "split it into smaller files")
    text = decode_bytes(data, filename)[0] if data.strip() else ""
    if not text.strip():
        raise InvalidInput(filename, None, "is empty", "upload the staff list exported as CSV")
    rows = list(islice(parse_rows(text, bulk.HEADERS, name=filename), limits.max_upload_rows + 1))
    if rows and "full_name" not in rows[0][1] and not {"family_name", "given_name"} <= rows[0][1].keys():
        raise InvalidInput(filename, None, "has no column for the full name",
                           "add a 'Họ và tên' (full name) column, or 'Họ đệm' and 'Tên' columns")
    if not rows:
        raise InvalidInput(filename, None, "has no rows below the header", "add one row per official")
    if len(rows) > limits.max_upload_rows:
        raise InvalidInput(filename, None, f"has more than {limits.max_upload_rows} rows",
                           f"split it into files of at most {limits.max_upload_rows} rows")
    return rows


def _refuse_row(row: bulk.Row, action: str, detail: str) -> None:
    row.action, row.detail, row.address, row.account_id, row.changes = action, detail, "", None, {}


def preview_create(session: Session, settings: Settings, principal: Principal, agency_code: str,
                   rows: list[tuple[int, dict[str, str]]]) -> bulk.Plan:
    """The plan for creating the rows' accounts (default agency ``agency_code``); nothing is written.

    Rows for an agency the principal does not administer are errors, and rows matching an
    account of such an agency are conflicts (their address is not shown).

    :raises NotFound: no such agency, or one the principal does not administer.
    """
    agency = roles.agency_in_scope(session, principal, agency_code)
    plan = bulk.make_plan(session, settings, rows, agency.code)
    ids = dict(session.execute(select(Agency.code, Agency.id)).all())
    matched = [r.account_id for r in plan.rows if r.account_id]
    owners = dict(session.execute(select(Account.id, Account.agency_id).where(Account.id.in_(matched))).all()
                  ) if matched else {}
    for row in plan.rows:
        code = row.values.get("agency") or row.agency
        if code in ids and not principal.administers(ids[code]):
            _refuse_row(row, "error", f"agency {code} is not one you administer")
        elif row.account_id and not principal.administers(owners[row.account_id]):
            _refuse_row(row, "conflict", "matches an existing account of an agency you do not administer "
                                         "(ask the province administrators)")
    return plan


def _payload_rows(settings: Settings, payload: Mapping[str, Any]) -> list[tuple[int, dict[str, str]]]:
    """``payload["rows"]``: dicts with a ``line`` and header fields, or (line, values) pairs."""
    raw = payload.get("rows")
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InvalidInput("rows", None, "is empty", "give one row per official, or upload the HR file")
    if len(raw) > settings.portal.max_upload_rows:
        raise InvalidInput("rows", None, f"has more than {settings.portal.max_upload_rows} rows",
                           "split the request")
    out = []
    for index, item in enumerate(raw, 1):
        if isinstance(item, Mapping):
            values = dict(item)
            line = values.pop("line", index)
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], Mapping):
            line, values = item[0], dict(item[1])
        else:
            raise InvalidInput(f"rows[{index}]", None, "is not a row", "give the fields of one official")
        try:
            line = int(line)
        except (TypeError, ValueError):
            raise InvalidInput(f"rows[{index}].line", line, "is not a line number") from None
        unknown = [k for k in values if k not in bulk.HEADERS]
        if unknown:
            raise InvalidInput(f"line {line}", unknown[0], "is not a column", f"use: {', '.join(bulk.HEADERS)}")
        out.append((line, {k: unicodedata.normalize("NFC", str(v)).strip()
                           for k, v in values.items() if v is not None}))
    return out


def _lines(rows: list[bulk.Row]) -> str:
    text = "; ".join(f"line {r.line}: {r.detail}" for r in rows[:SHOWN_LINES])
    return text + (f"; and {len(rows) - SHOWN_LINES} more" if len(rows) > SHOWN_LINES else "")


# --- submit --------------------------------------------------------------------------------------


def _required(payload: Mapping[str, Any], field: str, hint: str) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, None, "is required", hint)
    return value.strip()


def _check_create(session: Session, settings: Settings, principal: Principal,
                  payload: Mapping[str, Any]) -> tuple[Agency, dict[str, Any], str]:
    code = _required(payload, "agency", "give the code of the agency the accounts are for")
    rows = _payload_rows(settings, payload)
    plan = preview_create(session, settings, principal, code, rows)
    bad = [r for r in plan.rows if r.action in ("error", "conflict")]
    if bad:
        raise InvalidInput("rows", None, _lines(bad), "correct these lines and submit again")
    creates = plan.count("create")
    if not creates:
        raise InvalidInput("rows", None, f"no row would create an account (all {len(plan.rows)} match "
                           "existing accounts)", "there is nothing to request")
    agency = get_agency(session, code)
    summary = f"{creates} new account{'s' if creates != 1 else ''} in {agency.code}"
    if len(plan.rows) > creates:
        summary += f" ({len(plan.rows) - creates} existing skipped)"
    return agency, {"agency": agency.code, "rows": [{"line": line, **values} for line, values in rows]}, summary


def _parse_certificate(value: Any) -> certificates.Parsed:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str) and "-----BEGIN" in value:
        data = value.encode("utf-8")
    elif isinstance(value, str) and value.strip():
        try:
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("certificate", None, "is neither PEM text nor base64 DER",
                               "paste the text of the .pem file, or send the .cer file base64-encoded") from None
    else:
        raise InvalidInput("certificate", None, "is required", "give the certificate file (PEM or DER)")
    return certificates.parse(data, "certificate")


def _check_account_change(session: Session, principal: Principal, kind: str,
                          payload: Mapping[str, Any]) -> tuple[Agency, dict[str, Any], str]:
    given = _required(payload, "address", "give the address of the account")
    account = roles.account_in_scope(session, principal, given)
    if not principal.administers(account.agency_id):  # one's own account is not enough
        raise NotFound("account", given)
    address, verb = account.address, VERBS[kind]
    if account.status not in ALLOWED[kind]:
        raise Conflict(f"account {address} is {account.status}; cannot {verb} it")
    stored: dict[str, Any] = {"address": address}
    summary = f"{verb} {address}"
    if kind == "restore" and account.agency.status != "active":
        raise Conflict(f"agency {account.agency.code} is {account.agency.status}; ask for a transfer instead")
    if kind == "transfer":
        target = get_agency(session, _required(payload, "agency", "give the code of the new agency"))
        if target.id == account.agency_id:
            raise Conflict(f"account {address} already belongs to {target.code}")
        if target.status != "active":
            raise Conflict(f"agency {target.code} is {target.status}; accounts move to active agencies only")
        stored["agency"] = target.code
        summary = f"transfer {address} from {account.agency.code} to {target.code}"
    if kind == "cert_bind":
        parsed = _parse_certificate(payload.get("certificate"))
        bound = certificates.find_bound(session, parsed)
        if bound is not None:
            holder = bound.account.address if bound.account else bound.agency.code if bound.agency else "?"
            raise Conflict(f"certificate {parsed.fingerprint[:16]} is already bound (to {holder})")
        subject = trust.show_name(parsed.leaf.subject)
        stored.update(certificate=base64.b64encode(parsed.leaf.public_bytes(Encoding.DER)).decode("ascii"),
                      chain=[base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in parsed.bundled],
                      fingerprint=parsed.fingerprint, subject=subject)
        summary = f"bind certificate {subject} to {address}"
    for other in session.scalars(select(ChangeRequest).where(ChangeRequest.status == "pending",
                                                             ChangeRequest.kind == kind,
                                                             ChangeRequest.agency_id == account.agency_id)):
        if json.loads(other.payload).get("address") == address:
            raise Conflict(f"request #{other.id} already asks to {verb} {address} and awaits a decision")
    return account.agency, stored, summary


def submit(session: Session, settings: Settings, box: SecretBox, principal: Principal, kind: str,
           payload: Mapping[str, Any]) -> ChangeRequest:
    """Store a pending request (its ``id`` set), audit it and notify the province administrators;
    an auto-approve rule of its agency (or one above) applies it at once (see :func:`approve`).

    Payloads: ``create`` {agency, rows}; ``suspend``/``restore``/``retire``/``reset_password``
    {address}; ``transfer`` {address, agency}; ``cert_bind`` {address, certificate (PEM text or
    base64 DER)}.

    :raises InvalidInput: unknown kind, a missing field, bad rows (naming their lines), a bad file.
    :raises NotFound: an account or agency outside the principal's agencies (or absent).
    :raises Conflict: the account is not in a state the change applies to, or a pending request
        already asks for the same change.
    """
    if kind not in KINDS:
        raise InvalidInput("kind", kind, "is not a request kind", f"use one of: {', '.join(KINDS)}")
    if not isinstance(payload, Mapping):
        raise InvalidInput("payload", None, "is not a set of named fields")
    if kind == "create":
        agency, stored, summary = _check_create(session, settings, principal, payload)
    else:
        agency, stored, summary = _check_account_change(session, principal, kind, payload)
    req = ChangeRequest(kind=kind, agency=agency, status="pending", summary=summary[:255],
                        payload=json.dumps(stored, ensure_ascii=False), requested_by=principal.name,
                        requester_account_id=principal.account_id, requester_token_id=principal.token_id,
                        source=principal.source)
    session.add(req)
    session.flush()
    audit.record(session, principal.actor(), "request.submit", "request", str(req.id), _label(req), None,
                 {"kind": kind, "agency": agency.code, "summary": req.summary})
    rule = _auto_rule(session, agency, kind)
    if rule is not None:
        actor = Actor(f"auto-approve rule of {rule.agency.code}", principal.source, principal.client)
        _decide(session, settings, box, req, actor, None)
    notify.queue(session, roles.province_admin_addresses(session), *notify.submitted(settings, req))
    return req


def _auto_rule(session: Session, agency: Agency, kind: str) -> AutoApproveRule | None:
    """The rule of ``agency`` or the nearest agency above it for ``kind``, if any."""
    seen: set[str] = set()
    current: Agency | None = agency
    while current is not None and current.id not in seen:
        seen.add(current.id)
        rule = session.get(AutoApproveRule, (current.id, kind))
        if rule is not None:
            return rule
        current = current.parent
    return None


def _label(req: ChangeRequest) -> str:
    return f"#{req.id} {req.kind} {req.agency.code}"


# --- decide --------------------------------------------------------------------------------------


def _locked(session: Session, request_id: int) -> ChangeRequest | None:
    """The request, its row locked until the transaction ends (two deciders wait for each other)."""
    return session.scalar(select(ChangeRequest).where(ChangeRequest.id == request_id)
                          .with_for_update(of=ChangeRequest).execution_options(populate_existing=True))


def _pending(session: Session, request_id: int) -> ChangeRequest:
    req = _locked(session, request_id)
    if req is None:
        raise NotFound("request", f"#{request_id}")
    if req.status != "pending":
        when = req.decided_at.isoformat(timespec="seconds") if req.decided_at else "?"
        raise Conflict(f"request #{req.id} is already {req.status} (by {req.decided_by} on {when}); "
                       "only a pending request can be decided")
    return req


def _handover(lines: list[tuple[str, str, str, str]]) -> bytes:
    """The handover CSV (UTF-8 with BOM for Excel), as ``govmail bulk`` writes it."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(bulk.CredentialsFile.HEADER)
    writer.writerows(lines)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _apply_create(session: Session, settings: Settings, actor: Actor, req: ChangeRequest,
                  payload: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    rows = [(int(r.pop("line")), r) for r in payload["rows"]]
    plan = bulk.make_plan(session, settings, rows, req.agency.code)
    bad = [r for r in plan.rows if r.action in ("error", "conflict")]
    if bad:
        raise Conflict(f"request #{req.id} no longer applies cleanly: {_lines(bad)}")
    created, skipped, lines = [], [], []
    for row in plan.rows:
        if row.action != "create":
            detail = f"already exists ({row.detail})" if row.detail else "already exists"
            skipped.append({"line": row.line, "address": row.address, "detail": detail})
            continue
        v = row.values
        account, initial = accounts.create_account(session, settings, actor, NewAccount(
            agency=v["agency"], full_name=v["full_name"], title=v.get("title"), phone=v.get("phone"),
            employee_code=v.get("employee_code"), personal_email=v.get("personal_email"),
            address=row.address, quota_mb=v.get("quota_mb")))
        assert initial is not None
        created.append({"line": row.line, "address": account.address, "full_name": account.full_name})
        lines.append((account.address, account.full_name, account.agency.code, initial))
    return {"created": created, "skipped": skipped}, lines


def _apply(session: Session, settings: Settings, actor: Actor, req: ChangeRequest,
           now: datetime) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """Apply the request with the engine; (outcome, handover lines). :raises GovmailError: refused."""
    payload = json.loads(req.payload)
    if req.kind == "create":
        return _apply_create(session, settings, actor, req, payload)
    address = payload["address"]
    account = accounts.get_account(session, address)
    if account.agency_id != req.agency_id:
        raise Conflict(f"account {address} has moved to {account.agency.code} since the request was made")
    if req.kind == "reset_password":
        account, initial = accounts.reset_password(session, settings, actor, address)
        assert initial is not None
        return {"address": account.address}, [(account.address, account.full_name, account.agency.code, initial)]
    if req.kind == "cert_bind":
        store = trust.load_trust_store(settings)
        leaf, *chain = (x509.load_der_x509_certificate(base64.b64decode(c))
                        for c in [payload["certificate"], *payload.get("chain", ())])
        parsed = certificates.Parsed(f"certificate of request #{req.id}", leaf, tuple(chain))
        holder = certificates.resolve_holder(session, address, None)
        cert = certificates.bind(session, actor, store, parsed, holder, now)
        return {"fingerprint": cert.fingerprint, "not_after": trust.iso(cert.not_after)}, []
    if req.kind == "suspend":
        account = accounts.suspend(session, settings, actor, address)
    elif req.kind == "restore":
        account = accounts.restore(session, settings, actor, address)
    elif req.kind == "retire":
        account = accounts.retire(session, settings, actor, address, now)
    elif req.kind == "transfer":
        account = accounts.transfer(session, settings, actor, address, payload["agency"])
    return {"address": account.address, "status": account.status, "agency": account.agency.code}, []


def _decide(session: Session, settings: Settings, box: SecretBox, req: ChangeRequest, actor: Actor,
            now: datetime | None) -> ChangeRequest:
    now = now or utcnow()
    try:
        with session.begin_nested():
            outcome, lines = _apply(session, settings, actor, req, now)
    except GovmailError as exc:
        req.status, outcome, lines = "failed", {"error": str(exc)}, []
    else:
        req.status = "applied"
    req.outcome = json.dumps(outcome, ensure_ascii=False)
    req.credentials = box.encrypt(_handover(lines)) if lines else None
    req.decided_by, req.decided_at = actor.name, now
    session.flush()
    audit.record(session, actor, "request.approve", "request", str(req.id), _label(req), {"status": "pending"},
                 {"status": req.status, "outcome": outcome})
    _notify_requester(session, settings, req)
    return req


def _notify_requester(session: Session, settings: Settings, req: ChangeRequest) -> None:
    account = session.get(Account, req.requester_account_id) if req.requester_account_id else None
    if account is not None and account.status == "active":
        notify.queue(session, [account.address], *notify.decided(settings, req))


def approve(session: Session, settings: Settings, box: SecretBox, principal: Principal, request_id: int,
            now: datetime | None = None) -> ChangeRequest:
    """Approve a pending request and apply it: ``applied``, or ``failed`` with ``outcome["error"]``
    when the engine refuses (nothing of the change is then written). The engine's own audit rows
    name the approver.

    :raises Forbidden: not a province administrator. :raises NotFound: no such request.
    :raises Conflict: the request is not pending.
    """
    principal.require_province()
    return _decide(session, settings, box, _pending(session, request_id), principal.actor(), now)


def reject(session: Session, settings: Settings, principal: Principal, request_id: int, reason: str,
           now: datetime | None = None) -> ChangeRequest:
    """Reject a pending request with a reason the requester is told.

    :raises Forbidden: not a province administrator. :raises InvalidInput: no reason, or too long.
    :raises NotFound: no such request. :raises Conflict: the request is not pending.
    """
    principal.require_province()
    text = (reason or "").strip()
    if not text:
        raise InvalidInput("reason", None, "is required", "tell the requester why, so they can correct it")
    if len(text) > MAX_REASON:
        raise InvalidInput("reason", text[:40], f"is longer than {MAX_REASON} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\r\n\t" for c in text):
        raise InvalidInput("reason", None, "contains control characters", "write plain text")
    req = _pending(session, request_id)
    req.status, req.reason = "rejected", text
    req.decided_by, req.decided_at = principal.name, now or utcnow()
    session.flush()
    audit.record(session, principal.actor(), "request.reject", "request", str(req.id), _label(req),
                 {"status": "pending"}, {"status": "rejected", "reason": text})
    _notify_requester(session, settings, req)
    return req


# --- read ----------------------------------------------------------------------------------------


def get_request(session: Session, principal: Principal, request_id: int) -> ChangeRequest:
    """:raises NotFound: no such request, or one of an agency the principal does not administer."""
    req = session.get(ChangeRequest, request_id)
    if req is None or not principal.administers(req.agency_id):
        raise NotFound("request", f"#{request_id}")
    return req


def _scoped(principal: Principal, status: str | None):  # type: ignore[no-untyped-def]
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", status, "is not a request status", f"use one of: {', '.join(STATUSES)}")
    conditions = [] if principal.province else [ChangeRequest.agency_id.in_(sorted(principal.agencies))]
    if status is not None:
        conditions.append(ChangeRequest.status == status)
    return conditions


def list_requests(session: Session, principal: Principal, *, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> list[ChangeRequest]:
    """The requests of the principal's agencies, newest first. :raises InvalidInput: bad status or page."""
    conditions = _scoped(principal, status)
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit", limit, "is out of range", "give 1 to 1000 rows and an offset of 0 or more")
    return list(session.scalars(select(ChangeRequest).where(*conditions)
                                .order_by(ChangeRequest.created_at.desc(), ChangeRequest.id.desc())
                                .limit(limit).offset(offset)))


def count_requests(session: Session, principal: Principal, *, status: str | None = None) -> int:
    """How many requests :func:`list_requests` pages through."""
    return session.scalar(select(func.count()).select_from(ChangeRequest).where(*_scoped(principal, status))) or 0


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def request_view(req: ChangeRequest) -> dict[str, Any]:
    """The request as shown (JSON-ready): never the handover file or the certificate itself.
    ``details`` is what was asked (rows, address, target agency, certificate subject)."""
    details = {k: v for k, v in json.loads(req.payload).items() if k not in ("certificate", "chain")}
    return {
        "id": req.id, "kind": req.kind, "status": req.status, "agency": req.agency.code, "summary": req.summary,
        "requested_by": req.requested_by, "source": req.source, "created_at": _iso(req.created_at),
        "decided_by": req.decided_by, "decided_at": _iso(req.decided_at), "reason": req.reason,
        "outcome": json.loads(req.outcome) if req.outcome else None,
        "credentials_available": req.credentials is not None, "details": details,
    }


def credentials_csv(session: Session, box: SecretBox, principal: Principal, request_id: int,
                    now: datetime | None = None) -> bytes:
    """The handover file (CSV with the initial passwords), for the requester only, once: it is
    deleted in the caller's transaction (lost after commit: ask for a password reset).

    :raises NotFound: no such request, not the requester, or a request without a handover file.
    :raises Conflict: already downloaded.
    """
    req = _locked(session, request_id)
    mine = req is not None and ((principal.account_id is not None and principal.account_id == req.requester_account_id)
                                or (principal.token_id is not None and principal.token_id == req.requester_token_id))
    if req is None or not mine or not principal.administers(req.agency_id):
        raise NotFound("request", f"#{request_id}")
    if req.credentials is None:
        if req.credentials_fetched_at is not None:
            raise Conflict(f"the handover file of request #{req.id} was already downloaded on "
                           f"{_iso(req.credentials_fetched_at)}; ask for a password reset if it was lost")
        raise NotFound("handover file of request", f"#{req.id}",
                       "only an applied create or password-reset request has one")
    data = box.decrypt(req.credentials)
    req.credentials, req.credentials_fetched_at = None, now or utcnow()
    session.flush()
    audit.record(session, principal.actor(), "request.credentials", "request", str(req.id), _label(req), None,
                 {"downloaded_at": _iso(req.credentials_fetched_at)})
    return data


# --- auto-approve rules -------------------------------------------------------------------------


def set_auto_approve(session: Session, principal: Principal, agency_code: str, kind: str, enabled: bool) -> None:
    """Approve requests of ``kind`` for the agency (and those below it) as they arrive, or stop.

    :raises Forbidden: not a province administrator. :raises InvalidInput: unknown kind.
    :raises NotFound: no such agency.
    """
    principal.require_province()
    if kind not in KINDS:
        raise InvalidInput("kind", kind, "is not a request kind", f"use one of: {', '.join(KINDS)}")
    agency = get_agency(session, agency_code)
    rule = session.get(AutoApproveRule, (agency.id, kind))
    if enabled and rule is None:
        session.add(AutoApproveRule(agency=agency, kind=kind, created_by=principal.name))
    elif not enabled and rule is not None:
        session.delete(rule)
    else:
        return
    session.flush()
    audit.record(session, principal.actor(), f"auto_approve.{'enable' if enabled else 'disable'}", "agency",
                 agency.id, agency.code, {"kind": kind, "enabled": not enabled}, {"kind": kind, "enabled": enabled})


def auto_approve_rules(session: Session) -> list[AutoApproveRule]:
    """Every rule, by agency code and kind."""
    return list(session.scalars(select(AutoApproveRule).join(Agency, AutoApproveRule.agency_id == Agency.id)
                                .order_by(Agency.code, AutoApproveRule.kind)))
