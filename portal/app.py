"""The portal application: one FastAPI app serving the pages and ``/api/v1``.

Handlers only parse, call the engine over one session, commit, and present. After a change is
committed, the directory is brought up to date and pending notification e-mails are sent, after the
response has gone out.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from directory.ldap import Directory
from portal import i18n
from provisioning import notify, secretbox
from provisioning.config import Settings
from provisioning.db import make_engine, session_factory
from provisioning.errors import Conflict, DirectoryUnavailable, GovmailError, InvalidInput, NotFound
from provisioning.roles import Forbidden

log = logging.getLogger("govmail.portal")
HERE = Path(__file__).parent

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Redirect(Exception):
    """Leave the handler with a 303 to ``url`` (sign-in needed, next step of sign-in ...)."""

    def __init__(self, url: str) -> None:
        self.url = url


class CsrfRefused(Exception):
    """A form came without the session's CSRF token."""


@dataclass
class Portal:
    """What every handler shares: settings, the session factory, the key, the directory."""

    settings: Settings
    factory: sessionmaker[Session]
    box: secretbox.SecretBox
    directory: Directory
    templates: Jinja2Templates
    usage_cache: dict[str, tuple[float, int]] = field(default_factory=dict)  # see overview.agency_overview
    # SQLite has one writer at a time and every govmail transaction takes the write lock at BEGIN:
    # requests queue here, in order, instead of polling SQLite's busy handler (which starves some).
    # An asyncio lock: waiting must not hold one of the threads the request itself needs.
    sqlite_lock: asyncio.Lock | None = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A database session for one request (on SQLite, one request at a time)."""
        if self.sqlite_lock is None:
            with self.factory() as session:
                yield session
            return
        async with self.sqlite_lock:
            with self.factory() as session:
                yield session

    def after_change(self) -> None:
        """Publish queued directory changes and send queued notifications (never raises)."""
        if self.settings.directory.sync_after_change:
            from directory.sync import sync

            try:
                result = sync(self.factory, self.directory)
                for error in result.errors:
                    log.warning("directory refused %s (will retry)", error)
            except DirectoryUnavailable as exc:
                log.warning("directory unavailable, changes stay queued: %s", exc)
            except Exception:  # the change is committed; the outbox keeps it for the next sync
                log.exception("directory sync failed")
        try:
            notify.flush(self.factory, self.settings)
        except Exception:
            log.exception("sending notifications failed")


def create_app(settings: Settings, factory: sessionmaker[Session] | None = None) -> FastAPI:
    """The portal for ``settings``; ``factory`` defaults to one on ``[database] url``.

    :raises ConfigError: the portal key cannot be read or created.
    """
    if factory is None:
        db = settings.database
        factory = session_factory(make_engine(db.url, db.echo, db.lock_timeout))
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["languages"] = i18n.LANGUAGES
    templates.env.auto_reload = False  # templates ship with the code: no stat() of every file per page
    portal = Portal(settings, factory, secretbox.load(settings), Directory(settings.directory), templates,
                    sqlite_lock=asyncio.Lock() if factory.kw["bind"].dialect.name == "sqlite" else None)

    app = FastAPI(
        title="govmail API", version="1",
        description=("Agency self-service for official mail accounts: read an agency's accounts and submit "
                     "requests (new accounts, suspensions, retirements, transfers, password resets, "
                     "certificate binds) that a province administrator approves. Authenticate with "
                     "`Authorization: Bearer <token>`; a token is scoped to one agency and those below it."),
        docs_url="/api/docs", redoc_url=None, openapi_url="/api/v1/openapi.json",
    )
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from portal import api, pages, signin_pages

    app.include_router(signin_pages.router)
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if settings.portal.cookie_secure:  # served through HTTPS (a TLS proxy): browsers keep to it
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.exception_handler(Redirect)
    async def redirect(request: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.url, status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        return error_page(request, 403, "This form has expired or did not come from this portal. Go back, reload the page and try again.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        messages = {401: ("unauthorized", "a valid API token is required: Authorization: Bearer <token>"),
                    404: ("not_found", "Not found."), 405: ("method_not_allowed", "method not allowed")}
        code, message = messages.get(exc.status_code, ("http_error", str(exc.detail)))
        response = failure(request, exc.status_code, code, message)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)  # 422, as documented
        fields = ", ".join(str(e["loc"][-1]) for e in exc.errors())
        return error_page(request, 400, "Not a valid value: {fields}.", fields=fields)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return failure(request, 404, "not_found", "Not found.")

    @app.exception_handler(GovmailError)
    async def govmail_error(request: Request, exc: GovmailError) -> Response:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else \
            400 if isinstance(exc, InvalidInput) else 500
        return failure(request, status, exc.code, str(exc))

    return app


def failure(request: Request, status: int, code: str, message: str) -> Response:
    """An error as JSON for the API, as a page otherwise."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": code, "message": message}, status_code=status)
    return error_page(request, status, message)


def error_page(request: Request, status: int, message: str, **values: object) -> HTMLResponse:
    """``message`` in the visitor's language when it is interface text (``{name}`` filled from ``values``)."""
    portal: Portal = request.app.state.portal
    lang = i18n.language(request)
    return portal.templates.TemplateResponse(request, "error.html", {
        "_": i18n.translator(lang), "lang": lang, "status": status, "message": message, "values": values,
        "me": None,
    }, status_code=status)


def app_from_environment() -> FastAPI:
    """The app for ``$GOVMAIL_CONFIG`` (uvicorn's factory for ``govmail portal run``'s workers)."""
    from provisioning.config import load_settings

    return create_app(load_settings())
