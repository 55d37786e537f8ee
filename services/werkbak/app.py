"""Wiring of the werkbak: FastAPI with server-rendered Jinja2 pages, the session, the OIDC login, the directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.werkbak.apis import Apis
from services.werkbak.auth import Auth, LoginFailed, csrf_ok
from services.werkbak.directory import Directory
from services.werkbak.metrics import WerkbakMetrics
from services.werkbak.pages import Werkbak, build_router
from services.werkbak.settings import WerkbakSettings
from shared.http import NO_FRAMEWORK_TELEMETRY, add_operational_routes
from shared.logging import configure_logging
from shared.municipality import Municipality, load_municipality
from shared.tracing import configure_tracing

log = structlog.get_logger(__name__)
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "werkbak_sessie"


class SecurityHeaders:
    """CSP without inline script, no caching of anything but the static files, no framing, no sniffing."""

    def __init__(self, app: ASGIApp, *, issuer: str) -> None:
        self.app = app
        origin = urlsplit(issuer)
        idp = f"{origin.scheme}://{origin.netloc}" if origin.netloc else ""
        # form-action also covers the redirect to the identity provider after the logout form.
        self.csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                    f"form-action 'self' {idp}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'").encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", self.csp), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if not static:
                    headers += [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: WerkbakSettings | None = None, *, municipality: Municipality | None = None) -> FastAPI:
    """Build the werkbak; nothing connects until start."""
    settings = settings or WerkbakSettings()
    configure_logging(service="werkbak", log_format=settings.log_format, level=settings.log_level)
    configure_tracing("werkbak", endpoint=settings.otlp_endpoint)
    registry = CollectorRegistry()
    metrics = WerkbakMetrics(registry)
    auth = Auth(settings)
    directory = Directory(settings.kafka_bootstrap)
    apis = Apis(intake_url=settings.intake_url.rstrip("/"), feedback_url=settings.feedback_url.rstrip("/"),
                metrics=metrics, timeout_s=settings.werkbak_api_timeout_s)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    werkbak = Werkbak(auth=auth, apis=apis, directory=directory,
                      municipality=municipality or load_municipality(settings.config), metrics=metrics,
                      templates=templates)
    idp_ok = asyncio.Event()

    async def watch_idp() -> None:
        while not idp_ok.is_set():
            try:
                await auth.metadata()
                idp_ok.set()
            except Exception as exc:
                log.warning("idp_not_reachable", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await apis.start()
        tasks = [asyncio.create_task(directory.run()), asyncio.create_task(watch_idp())]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await apis.stop()

    api = FastAPI(title="Schakel werkbak", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, telemetry=NO_FRAMEWORK_TELEMETRY)
    api.add_middleware(SessionMiddleware, secret_key=settings.werkbak_session_secret.get_secret_value(),
                       session_cookie=SESSION_COOKIE, max_age=None, same_site="lax",
                       https_only=settings.secure_cookies)
    api.add_middleware(SecurityHeaders, issuer=settings.oidc_issuer or "")
    api.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def ready() -> bool:
        is_ready = directory.caught_up.is_set() and idp_ok.is_set()
        metrics.ready.set(1 if is_ready else 0)
        metrics.directory_signals.set(len(directory.entries))
        return is_ready

    add_operational_routes(api, registry=registry, ready=ready)
    add_login_routes(api, werkbak)
    api.include_router(build_router(werkbak))
    add_error_pages(api, werkbak)
    return api


def add_login_routes(api: FastAPI, w: Werkbak) -> None:
    """Login, the OIDC callback, logout and the page after it."""

    @api.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/signalen", status_code=303)

    @api.get("/aanmelden", include_in_schema=False)
    async def login(request: Request) -> Response:
        w.metrics.pages.labels(page="aanmelden", status="302").inc()
        return await w.auth.login_redirect(request, next_path=request.query_params.get("next", "/signalen"))  # type: ignore[no-any-return]

    @api.get("/auth/callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        if "error" in request.query_params:
            w.metrics.logins.labels(outcome="refused").inc()
            return w.error(request, status=400, title="Inloggen niet gelukt",
                           message="De gemeente heeft het inloggen afgebroken. Probeer het opnieuw.")
        try:
            next_path = await w.auth.complete_login(request)
        except LoginFailed as exc:
            w.metrics.logins.labels(outcome="failed").inc()
            log.warning("login_failed", reason=str(exc))
            return w.error(request, status=400, title="Inloggen niet gelukt",
                           message="Het inloggen kon niet worden afgerond. Begin opnieuw bij de inlogpagina.")
        w.metrics.logins.labels(outcome="ok").inc()
        log.info("login")
        return RedirectResponse(next_path, status_code=303)

    @api.post("/afmelden", include_in_schema=False)
    async def logout(request: Request) -> Response:
        person = w.auth.person(request)
        form = await request.form()
        if person is not None and not isinstance(person, str) and not csrf_ok(person, form.get("csrf_token")):
            w.metrics.csrf_refused.inc()
            return w.error(request, status=403, person=person, title="Formulier verlopen",
                           message="Dit formulier is verlopen of niet van deze site. Probeer het opnieuw.")
        w.metrics.logouts.labels(reason="asked").inc()
        log.info("logout")
        return RedirectResponse(await w.auth.logout_url(request), status_code=303)

    @api.get("/afgemeld", include_in_schema=False)
    async def logged_out(request: Request) -> Response:
        w.metrics.pages.labels(page="afgemeld", status="200").inc()
        return w.render(request, "afgemeld.html", person=None)


def add_error_pages(api: FastAPI, w: Werkbak) -> None:
    """Every error a person can meet, as a page in Dutch."""

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        w.metrics.pages.labels(page="fout", status=str(exc.status_code)).inc()
        if exc.status_code == 404:
            return w.error(request, status=404, title="Pagina niet gevonden",
                           message="Deze pagina bestaat niet. Ga naar Mijn signalen.")
        if exc.status_code == 405:
            return w.error(request, status=405, title="Niet toegestaan", message="Dit kan op deze pagina niet.")
        return w.error(request, status=exc.status_code, title="Er ging iets mis",
                       message="Dit verzoek kon niet worden afgehandeld.")

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("werkbak_error", error=type(exc).__name__)
        w.metrics.pages.labels(page="fout", status="500").inc()
        return w.error(request, status=500, title="Er ging iets mis",
                       message="Er ging aan onze kant iets mis. Probeer het zo opnieuw.")
