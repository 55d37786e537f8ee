"""The werkbak's pages: Mijn signalen, Het signaal (with its actions), Mijn meldingen, Nieuw signaal, Matches.

Every page reads through feedback's or intake's API with the person's own token, so the authorization and
the audit happen there (ADR 0017); a refusal comes back as the API's Dutch text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from services.werkbak import views
from services.werkbak.apis import ApiAnswer, Apis
from services.werkbak.auth import Auth, SessionPerson, csrf_ok
from services.werkbak.directory import Directory
from services.werkbak.forms import ACTIONS, FormErrors, action_event, signal_payload
from services.werkbak.metrics import WerkbakMetrics
from shared.events import utcnow
from shared.municipality import Municipality
from shared.taxonomy import CATEGORIES, FLAGS, LEGAL_BASES

log = structlog.get_logger(__name__)
Handler = Callable[[Request, SessionPerson], Awaitable[Response]]


@dataclass
class Werkbak:
    """What the pages need, built by app.create_app."""

    auth: Auth
    apis: Apis
    directory: Directory
    municipality: Municipality
    metrics: WerkbakMetrics
    templates: Jinja2Templates

    def organisations(self) -> dict[str, str]:
        return {pid: p.name for pid, p in self.municipality.partners.items()}

    def body_names(self) -> dict[str, str]:
        return {body_id: body.name for body_id, body in self.municipality.bodies.items()}

    def render(self, request: Request, template: str, *, person: SessionPerson | None, status: int = 200,
               **context: Any) -> Response:
        """A page with the layout's context: the person, their organisation, the CSRF token, a flash message."""
        flash = request.session.pop("flash", None) if person is not None else None
        roles = self.municipality.roles_of_person(person.email, person.organisation) if person else {}
        organisation = self.municipality.partners.get(person.organisation) if person else None
        return self.templates.TemplateResponse(request, template, {
            "person": person, "organisation": organisation.name if organisation else "", "flash": flash,
            "is_coordinator": "coordinator" in roles.values(), "csrf": person.csrf if person else "",
            "views": views, **context,
        }, status_code=status)

    def error(self, request: Request, *, status: int, title: str, message: str,
              person: SessionPerson | None = None) -> Response:
        return self.render(request, "fout.html", person=person, status=status, title=title, message=message)

    def not_found(self, request: Request, person: SessionPerson | None) -> Response:
        return self.error(request, status=404, title="Niet gevonden", person=person,
                          message="Dit signaal bestaat niet of is niet voor u zichtbaar.")

    def relogin(self, request: Request, *, reason: str = "") -> Response:
        """To the login, coming back to this page afterwards."""
        path = request.url.path if request.method == "GET" else "/signalen"
        target = f"/aanmelden?next={quote(path, safe='/')}" + (f"&reden={reason}" if reason else "")
        return RedirectResponse(target, status_code=303)

    def api_failed(self, request: Request, answer: ApiAnswer, person: SessionPerson) -> Response:
        """A page for an API answer that is neither success nor a refusal the page explains itself."""
        if answer.status == 401:
            request.session.clear()
            self.metrics.logouts.labels(reason="expired").inc()
            return self.relogin(request, reason="verlopen")
        if answer.status == 404:
            return self.not_found(request, person)
        return self.error(request, status=503 if answer.status >= 500 else answer.status, person=person,
                          title=str(answer.body.get("title") or "Er ging iets mis"), message=answer.detail)


def build_router(w: Werkbak) -> APIRouter:  # noqa: PLR0915 - one small handler per page
    """The pages; each one behind login except the login itself and the logged-out page."""
    router = APIRouter()

    def private(page: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            with w.metrics.page_duration.labels(page=page).time():
                person = w.auth.person(request)
                if person is None or isinstance(person, str):
                    if isinstance(person, str):
                        w.metrics.logouts.labels(reason=person).inc()
                    response = w.relogin(request, reason={"idle": "inactief", "expired": "verlopen"}.get(
                        person or "", ""))
                elif request.method == "POST" and not csrf_ok(person, (await request.form()).get("csrf_token")):
                    w.metrics.csrf_refused.inc()
                    log.info("csrf_refused", page=page)
                    response = w.error(request, status=403, person=person, title="Formulier verlopen",
                                       message="Dit formulier is verlopen of niet van deze site. "
                                               "Open de pagina opnieuw en probeer het nog eens.")
                else:
                    response = await handler(request, person)
            w.metrics.pages.labels(page=page, status=str(response.status_code)).inc()
            return response
        return run

    async def visible(person: SessionPerson, signal_ids: list[str]) -> list[dict[str, Any]] | ApiAnswer:
        answers = await w.apis.signals(person.access_token, signal_ids)
        failed = next((a for a in answers if a.status in (401, 503)), None)
        return failed or [a.body for a in answers if a.ok]

    async def my_signals(request: Request, person: SessionPerson) -> Response:
        roles = w.municipality.roles_of_person(person.email, person.organisation)
        found = await visible(person, w.directory.assigned_to(set(roles)))
        if isinstance(found, ApiAnswer):
            return w.api_failed(request, found, person)
        mine = [s for s in found if s.get("viewer", {}).get("body")]
        status = request.query_params.get("status", "open")
        urgency = request.query_params.get("urgentie", "")
        shown = views.most_urgent_first(views.filtered(mine, status=status, urgency=urgency))
        bodies = sorted({w.municipality.bodies[b].name for b in roles})
        return w.render(request, "signalen.html", person=person, signals=shown, total=len(mine),
                        status_filter=status, urgency_filter=urgency, now=utcnow(), bodies=bodies)

    async def reported(request: Request, person: SessionPerson) -> Response:
        found = await visible(person, w.directory.reported_by(person.organisation, person.email))
        if isinstance(found, ApiAnswer):
            return w.api_failed(request, found, person)
        mine = views.most_urgent_first([s for s in found if s.get("viewer", {}).get("reporter")])
        return w.render(request, "meldingen.html", person=person, signals=mine, now=utcnow())

    async def matches(request: Request, person: SessionPerson) -> Response:
        roles = w.municipality.roles_of_person(person.email, person.organisation)
        if "coordinator" not in roles.values():
            return w.error(request, status=403, person=person, title="Geen toegang",
                           message="Matches zijn voor de jeugd- en veiligheidscoördinator.")
        found = await visible(person, w.directory.assigned_to(set(roles)))
        if isinstance(found, ApiAnswer):
            return w.api_failed(request, found, person)
        matched = views.most_urgent_first([s for s in found if s.get("match")])
        return w.render(request, "matches.html", person=person, signals=matched, now=utcnow())

    async def signal_page(request: Request, person: SessionPerson) -> Response:
        signal_id = request.path_params["signal_id"]
        answer = await w.apis.signal(person.access_token, signal_id)
        if not answer.ok:
            return w.api_failed(request, answer, person)
        signal = answer.body
        return w.render(request, "signaal.html", person=person, signal=signal, now=utcnow(),
                        deadlines=views.deadlines(signal, utcnow()),
                        history=views.history(signal, organisations=w.organisations(), bodies=w.body_names()),
                        actions=views.actions(signal), bodies=w.body_names())

    async def act(request: Request, person: SessionPerson) -> Response:
        signal_id = request.path_params["signal_id"]
        action = request.path_params["action"]
        if action not in ACTIONS:
            return w.not_found(request, person)
        event = action_event(action, await request.form())
        if isinstance(event, str):
            request.session["flash"] = {"kind": "fout", "text": event}
            return RedirectResponse(f"/signalen/{signal_id}#acties", status_code=303)
        answer = await w.apis.event(person.access_token, signal_id, event)
        if answer.status in (401, 404) or answer.status >= 500:
            return w.api_failed(request, answer, person)
        if answer.ok:
            request.session["flash"] = {"kind": "ok", "text": ACTIONS[action].done}
            log.info("werkbak_action", signal_id=signal_id, action=action)
            return RedirectResponse(f"/signalen/{signal_id}", status_code=303)
        request.session["flash"] = {"kind": "fout", "text": answer.detail}
        return RedirectResponse(f"/signalen/{signal_id}#acties", status_code=303)

    def new_form(request: Request, person: SessionPerson, *, values: dict[str, Any], errors: FormErrors,
                 status: int = 200, message: str = "") -> Response:
        return w.render(request, "nieuw.html", person=person, status=status, values=values, errors=errors,
                        message=message, categories=CATEGORIES, flags=sorted(FLAGS), legal_bases=LEGAL_BASES)

    async def new_signal(request: Request, person: SessionPerson) -> Response:
        if request.method == "GET":
            return new_form(request, person, values={}, errors=FormErrors())
        form = await request.form()
        payload, values = signal_payload(form)
        answer = await w.apis.submit(person.access_token, payload)
        if answer.status == 202:
            request.session["flash"] = {"kind": "ok", "text": f"Uw signaal is ontvangen onder referentie "
                                                              f"{answer.body.get('reference', '')}."}
            log.info("werkbak_signal_submitted", signal_id=answer.body.get("signal_id"))
            return RedirectResponse("/meldingen", status_code=303)
        if answer.status in (401, 503):
            return w.api_failed(request, answer, person)
        return new_form(request, person, values=values, errors=FormErrors.of(answer.body), status=answer.status,
                        message=answer.detail)

    router.add_api_route("/signalen", private("signalen", my_signals), methods=["GET"], include_in_schema=False)
    router.add_api_route("/signalen/{signal_id}", private("signaal", signal_page), methods=["GET"],
                         include_in_schema=False)
    router.add_api_route("/signalen/{signal_id}/{action}", private("actie", act), methods=["POST"],
                         include_in_schema=False)
    router.add_api_route("/meldingen", private("meldingen", reported), methods=["GET"], include_in_schema=False)
    router.add_api_route("/nieuw", private("nieuw", new_signal), methods=["GET", "POST"], include_in_schema=False)
    router.add_api_route("/matches", private("matches", matches), methods=["GET"], include_in_schema=False)
    return router
