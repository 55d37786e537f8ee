"""The signal taxonomy of domain.md: categories, their default route and urgency, flags."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.events import Route, Urgency


@dataclass(frozen=True)
class Category:
    """One category code with its Dutch label and defaults."""

    code: str
    label: str
    route: Route
    urgency: Urgency


CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in (
        Category("ONT", "Stagnerende ontwikkeling", Route.ZAT, Urgency.U3),
        Category("KLAS", "Regelmatig uit de klas gezet", Route.ZAT, Urgency.U2),
        Category("CONC", "Concentratieproblemen", Route.ZAT, Urgency.U3),
        Category("VERZ", "Verzuim / te laat komen", Route.ZAT, Urgency.U2),
        Category("EMO", "Extreem boos of verdrietig", Route.ZAT, Urgency.U2),
        Category("PEST", "Gepest worden", Route.ZAT, Urgency.U2),
        Category("HULP", "Vraagt niet om hulp, teruggetrokken", Route.ZAT, Urgency.U3),
        Category("SOC", "Sociaal niet mee kunnen", Route.ZAT, Urgency.U3),
        Category("GEZ", "Zorgen over gezondheid", Route.ZAT, Urgency.U3),
        Category("THUIS", "Zorgen over thuissituatie / opvoeding", Route.WIJKTEAM, Urgency.U2),
        Category("BASIS", "Basisbehoeften / armoede", Route.WIJKTEAM, Urgency.U2),
        Category("OVERL", "Overlast buiten schooltijd", Route.OOV, Urgency.U2),
        Category("GROEP", "Contact met problematische jeugdgroep", Route.OOV, Urgency.U2),
        Category("CRIM", "Vermoeden strafbaar gedrag", Route.OOV, Urgency.U1),
        Category("HGKM", "Vermoeden huiselijk geweld / kindermishandeling", Route.MELDCODE, Urgency.U1),
        Category("ACUUT", "Acute onveiligheid", Route.COORDINATOR, Urgency.U0),
    )
}

FLAGS: frozenset[str] = frozenset({"SIBLING_LINK", "GROUP_LINK", "TRANSITION_VO"})
DERIVED_FLAGS: frozenset[str] = frozenset({"MATCH"})

PARTNER_KINDS: tuple[str, ...] = ("school", "police", "wijkteam", "leerplicht", "municipality")
LEGAL_BASES: tuple[str, ...] = ("meldrecht", "toestemming", "wettelijke_taak", "meldcode")


class Outcome(StrEnum):
    """How a signal was closed."""

    HULP_INGEZET = "hulp_ingezet"
    DOORVERWEZEN = "doorverwezen"
    VEILIG_THUIS = "veilig_thuis"
    GEEN_ACTIE_NODIG = "geen_actie_nodig"
    ONGEGROND = "ongegrond"


OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)
