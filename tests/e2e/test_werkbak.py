"""The werkbak in a real Chromium (Playwright, Debian's chromium), logged in at the real identity provider, on the
whole system over real Kafka: the IB'er opens the link in her e-mail, picks up, gives terugkoppeling and closes;
the teacher reads it under Mijn meldingen; another school's IB'er gets "niet gevonden"; the coordinator sees the
seed story's match; forms need their CSRF token; logout leaves nothing private; axe-core finds no WCAG 2.1 AA
violation on any page; the audit names the person; no child data in the werkbak's logs and metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, expect, sync_playwright

from shared.settings import REPO_ROOT
from tests.conftest import RunningIdp, start_broker
from tests.harness import System, wait_until
from tests.idp_support import DEMO_PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = REPO_ROOT / "infra" / "idp" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# SCHAKEL_SCREENSHOTS=docs/screenshots writes the screenshots of the main pages there (they are committed).
SCREENSHOTS = os.environ.get("SCHAKEL_SCREENSHOTS")

CANARY_SUMMARY = "Canarykind Pietje vecht bijna dagelijks op het plein"
CANARY_BSN = "111222333"
IB = "ib@delinde.example"
TEACHER = "juf.jansen@delinde.example"
OTHER_IB = "ib@hetanker.example"
COORDINATOR = "jvc@lindendam.example"
FEEDBACK_TEXT = "Besproken in het ZAT; de schoolmaatschappelijk werker gaat met ouders in gesprek."


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, idp: RunningIdp) -> Iterator[System]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-werkbak"))
    stack = System(broker=broker, root=tmp_path_factory.mktemp("werkbak"), extra_env={
        "SCHAKEL_OIDC_ISSUER": idp.issuer, "SCHAKEL_OIDC_CLIENT_ID": idp.werkbak.client_id,
        "SCHAKEL_OIDC_CLIENT_SECRET": idp.werkbak.client_secret,
    }).start(["intake", "routing", "feedback", "notify", "werkbak"], ports={"werkbak": idp.werkbak_port})
    yield stack
    stack.stop()
    broker.stop(kill=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; every person gets a fresh context (own profile, cookies, storage)."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium; .ci/run does)"
    with sync_playwright() as playwright:
        yield launch(playwright)


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)


def person(browser: Browser) -> BrowserContext:
    # bypass_csp only lets the test inject axe-core; the CSP header itself is asserted below.
    context = browser.new_context(bypass_csp=True, locale="nl-NL", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    return context


def log_in(page: Page, email: str) -> None:
    """At the identity provider's login form (where the werkbak sent the browser): fill it in and go."""
    expect(page.get_by_role("heading", name="Inloggen bij Gemeente Lindendam")).to_be_visible()
    accessible(page)
    page.get_by_label("E-mailadres").fill(email)
    page.get_by_label("Wachtwoord").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Inloggen").click()


def accessible(page: Page) -> None:
    """axe-core over the page: no WCAG 2.1 A/AA violation at all."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    assert len(result["passes"]) >= 5, "axe-core did not run its rules"
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert violations == [], f"axe-core on {page.url}: {violations}"


def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        target = REPO_ROOT / SCREENSHOTS
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def shown_after_reloads(page: Page, locator: Locator) -> None:
    """Reload until the locator shows: the werkbak's directory follows signals.lifecycle a moment behind."""
    def shown() -> bool:
        if locator.count() > 0:
            return True
        page.reload()
        return False

    wait_until(shown, timeout=30, interval=0.5, what=f"{locator} on {page.url}")
    expect(locator).to_be_visible()


def submit_seed_story(system: System) -> tuple[str, str]:
    """The school's signal (by its system, the teacher as reporter) and the police's on the same boy."""
    school = system.submit("obs-de-linde", {
        "category": "EMO", "subject": {"bsn": CANARY_BSN, "school_brin": "12AB", "pupil_ref": "L-2015-031",
                                       "family_ref": "FAM-0042"},
        "postcode_area": "3511", "summary": CANARY_SUMMARY,
        "reporter": {"name": "Juf Jansen", "email": TEACHER}, "legal_basis": "meldrecht", "parents_informed": True})
    assert school.status_code == 202, school.text
    police = system.submit("politie-basisteam", {
        "category": "OVERL", "subject": {"bsn": CANARY_BSN, "family_ref": "FAM-0042"},
        "flags": ["SIBLING_LINK", "GROUP_LINK"], "postcode_area": "3511", "legal_basis": "wettelijke_taak"})
    assert police.status_code == 202, police.text
    return school.json()["signal_id"], police.json()["signal_id"]


def test_the_werkbak_closes_the_loop_in_a_browser(system: System, idp: RunningIdp, browser: Browser) -> None:
    school_id, police_id = submit_seed_story(system)
    werkbak = system.services["werkbak"].base_url
    mail = system.wait_for_mail(IB, subject_contains="Nieuw signaal toegewezen")
    text = mail.message.get_body(("plain",)).get_content()
    assert "Bekijk het signaal (na inloggen)" in text
    links = set(re.findall(r"http://127\.0\.0\.1:\d+/signalen/[0-9a-f-]+", text))
    assert links == {f"{werkbak}/signalen/{school_id}"}
    link = links.pop()
    reference = system.wait_for_signal("obs-de-linde", school_id)["reference"]

    # The IB'er of OBS De Linde opens the link, logs in at the identity provider, lands on the signal.
    ib = person(browser)
    page = ib.new_page()
    page.goto(link)
    log_in(page, IB)
    expect(page).to_have_url(link)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Signaal {reference}")
    expect(page.get_by_text(CANARY_SUMMARY)).to_be_visible()
    accessible(page)
    shot(page, "signaal")
    # Keyboard alone: the first Tab reaches the skip link, which moves focus to the content; focus is visible.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Naar de inhoud"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "inhoud"
    page.get_by_role("button", name="Oppakken").focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("U hebt het signaal opgepakt.")
    page.get_by_label("Bericht voor de melder").fill(FEEDBACK_TEXT)
    page.get_by_role("button", name="Terugkoppeling geven").click()
    expect(page.get_by_role("status")).to_contain_text("terugkoppeling")
    accessible(page)
    page.get_by_label("Uitkomst").select_option("hulp_ingezet")
    page.get_by_role("button", name="Afsluiten").click()
    expect(page.get_by_role("status")).to_have_text("Het signaal is afgesloten.")
    expect(page.locator(".feiten")).to_contain_text("Afgesloten")
    expect(page.get_by_role("table").last).to_contain_text(IB)  # the history names the person
    accessible(page)

    # Mijn signalen: the closed signal under "Alle signalen"; the filter is a plain GET form.
    page.get_by_role("link", name="Mijn signalen").click()
    page.get_by_label("Status").select_option("alle")
    page.get_by_role("button", name="Filteren").click()
    expect(page.get_by_role("link", name=reference)).to_be_visible()
    accessible(page)
    shot(page, "mijn-signalen")

    # Security of the session: headers, cookie flags, CSRF.
    headers = ib.request.get(link).headers
    assert headers["cache-control"] == "no-store"
    assert "script-src 'self'" in headers["content-security-policy"] and "unsafe-inline" not in headers[
        "content-security-policy"]
    session = next(c for c in ib.cookies() if c["name"] == "werkbak_sessie")
    assert session["httpOnly"] is True and session["sameSite"] == "Lax"
    # Every cookie this browser holds for the host (the identity provider's too) is HttpOnly and SameSite.
    assert all(c["httpOnly"] and c["sameSite"] in ("Lax", "Strict") for c in ib.cookies()), ib.cookies()
    forged = ib.request.post(f"{link}/heropenen", form={"reden": "nieuwe_zorgen"})
    assert forged.status == 403 and "Formulier verlopen" in forged.text()
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    # Another person's session cannot act with this one's token: the token belongs to the session it was made in.
    teacher = person(browser)
    teacher_page = teacher.new_page()
    teacher_page.goto(f"{werkbak}/meldingen")
    log_in(teacher_page, TEACHER)
    borrowed = teacher.request.post(f"{link}/heropenen", form={"reden": "nieuwe_zorgen", "csrf_token": csrf})
    assert borrowed.status == 403

    # The teacher who reported reads the terugkoppeling under Mijn meldingen and got the e-mails.
    expect(teacher_page.get_by_role("heading", level=1)).to_have_text("Mijn meldingen")
    shown_after_reloads(teacher_page, teacher_page.get_by_text(FEEDBACK_TEXT))
    accessible(teacher_page)
    shot(teacher_page, "mijn-meldingen")
    for subject in ("Signaal ontvangen", "Terugkoppeling gegeven", "Signaal afgesloten"):
        system.wait_for_mail(TEACHER, subject_contains=subject)
    # She may read her signal, but not the free text (for the ZAT), and she cannot act as the ZAT.
    teacher_page.goto(link)
    expect(teacher_page.locator(".feiten")).to_contain_text("de melder")
    assert CANARY_SUMMARY not in teacher_page.content()
    assert teacher_page.get_by_role("button", name="Heropenen").count() == 0
    accessible(teacher_page)

    # Nieuw signaal: the API's Dutch message next to the field, then accepted.
    teacher_page.get_by_role("link", name="Nieuw signaal").click()
    accessible(teacher_page)
    teacher_page.get_by_label("Waar maakt u zich zorgen over?").select_option("PEST")
    teacher_page.get_by_role("button", name="Signaal versturen").click()
    expect(teacher_page.locator(".veldfout")).to_contain_text("Geef een BSN, of een BRIN-code samen met een "
                                                              "leerlingnummer.")
    expect(teacher_page.get_by_label("BSN")).to_have_attribute("aria-invalid", "true")
    accessible(teacher_page)
    shot(teacher_page, "nieuw-signaal-fout")
    teacher_page.get_by_label("BRIN-code van de school").fill("12AB")
    teacher_page.get_by_label("Leerlingnummer").fill("L-2016-007")
    teacher_page.get_by_role("button", name="Signaal versturen").click()
    expect(teacher_page.get_by_role("status")).to_contain_text("Uw signaal is ontvangen onder referentie SK-")

    # The IB'er of CBS Het Anker follows the same link: not found, and nothing of the signal on the page.
    other = person(browser)
    other_page = other.new_page()
    other_page.goto(link)
    log_in(other_page, OTHER_IB)
    expect(other_page.get_by_role("heading", level=1)).to_have_text("Niet gevonden")
    html = other_page.content()
    assert reference not in html and CANARY_SUMMARY not in html
    accessible(other_page)
    shot(other_page, "niet-gevonden")
    other_page.goto(f"{werkbak}/bestaat-niet")
    expect(other_page.get_by_role("heading", level=1)).to_have_text("Pagina niet gevonden")
    accessible(other_page)

    # The coordinator sees the seed story's match (the police signal, routed to OOV).
    police_reference = system.wait_for_signal("politie-basisteam", police_id)["reference"]
    coordinator = person(browser)
    coordinator_page = coordinator.new_page()
    coordinator_page.goto(f"{werkbak}/matches")
    log_in(coordinator_page, COORDINATOR)
    shown_after_reloads(coordinator_page, coordinator_page.get_by_role("link", name=police_reference))
    accessible(coordinator_page)
    shot(coordinator_page, "matches")
    coordinator_page.get_by_role("link", name=police_reference).click()
    expect(coordinator_page.locator(".feiten")).to_contain_text("Ja: een andere partner")
    expect(coordinator_page.locator(".feiten")).to_contain_text("Nog niet bepaald")
    accessible(coordinator_page)
    coordinator_page.get_by_label("Wie neemt de regie?").select_option("zat-12ab")
    coordinator_page.get_by_role("button", name="Regie vastleggen").click()
    expect(coordinator_page.get_by_role("status")).to_have_text("De regie is vastgelegd.")
    expect(coordinator_page.locator(".feiten")).to_contain_text("ZAT OBS De Linde")
    expect(coordinator_page.get_by_role("table").last).to_contain_text("Regie bij ZAT OBS De Linde")
    accessible(coordinator_page)
    shot(coordinator_page, "regie")

    # Logout: at the werkbak and at the identity provider; the back button shows nothing private.
    page.goto(link)
    page.get_by_role("button", name="Afmelden").click()
    expect(page.get_by_role("heading", name="Afmelden")).to_be_visible()
    accessible(page)
    page.get_by_role("button", name="Ja, afmelden").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("U bent afgemeld")
    accessible(page)
    shot(page, "afgemeld")
    for _ in range(3):
        page.go_back()
        assert CANARY_SUMMARY not in page.content() and FEEDBACK_TEXT not in page.content()
    page.goto(link)
    expect(page.get_by_role("heading", name="Inloggen bij Gemeente Lindendam")).to_be_visible()

    assert_audit_names_the_people(system, school_id)
    assert_no_child_data_in_the_werkbak(system)


def assert_audit_names_the_people(system: System, signal_id: str) -> None:
    """`schakel audit export` names the person of every werkbak page read and action on the signal."""
    env = {**os.environ, "SCHAKEL_KAFKA_BOOTSTRAP": system.broker.bootstrap}

    def exported() -> list[dict[str, Any]] | None:
        out = subprocess.run([sys.executable, "-m", "schakel", "audit", "export", "--signal", signal_id],
                             capture_output=True, text=True, env=env, check=True, timeout=60).stdout
        found = [json.loads(line) for line in out.splitlines()]
        done = {("closed", IB), ("read", OTHER_IB)} <= {(a["action"], a["actor_person"]) for a in found}
        return found if done else None

    audit = wait_until(exported, timeout=60, interval=1.0, what="the werkbak's audit records in the export")
    people = [a for a in audit if a["actor_person"]]
    seen = {(a["actor_person"], a["action"], a["outcome"]) for a in people}
    assert {(IB, "read", "allowed"), (IB, "acknowledged", "allowed"), (IB, "feedback", "allowed"),
            (IB, "closed", "allowed"), (TEACHER, "read", "allowed"), (OTHER_IB, "read", "refused")} <= seen
    assert all(a["actor_person_id"] and a["actor_partner_id"] for a in people)
    # The only records without a person are the school system's own reads (its partner token, in this test).
    assert {a["actor_partner_id"] for a in audit if not a["actor_person"]} <= {"obs-de-linde"}


def assert_no_child_data_in_the_werkbak(system: System) -> None:
    log_text = (system.root / "logs" / "werkbak.log").read_text()
    metrics_text = httpx.get(system.url("werkbak", "/metrics"), timeout=10).text
    for text in (log_text, metrics_text):
        assert CANARY_SUMMARY not in text and CANARY_BSN not in text and "Canarykind" not in text
    assert 'werkbak_page_requests_total{page="signaal",status="200"}' in metrics_text
    assert 'werkbak_csrf_refused_total' in metrics_text

