"""The municipality file: schema, loading with line numbers, cross-reference validation."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from shared.events import Route

Scope = Literal["signals:submit", "signals:update", "privacy:erase"]
PartnerKind = Literal["school", "police", "wijkteam", "leerplicht", "municipality"]
Region = Literal["noord", "midden", "zuid"]


class Strict(BaseModel):
    """Base for file sections: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(Strict):
    """A professional contact (never a child or a parent)."""

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class RoleContact(Person):
    """A contact with the role they play for a body."""

    role: str = Field(min_length=1, max_length=50)


class Partner(Strict):
    """An organisation that reports or handles signals, with hashed API tokens."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    kind: PartnerKind
    name: str
    scopes: list[Scope] = ["signals:submit"]
    token_hashes: list[str] = []
    contact: Person
    school_brin: str | None = Field(default=None, pattern=r"^[0-9]{2}[A-Z]{2}$")
    mail_preference: Literal["immediate", "daily_digest"] = "immediate"


class DateRange(Strict):
    """An inclusive range of dates."""

    start: date
    end: date


class School(Strict):
    """A primary school, its ZAT and its key roles."""

    brin: str = Field(pattern=r"^[0-9]{2}[A-Z]{2}$")
    name: str
    region: Region
    partner: str
    zat: list[RoleContact] = Field(min_length=1)
    directeur: Person
    aandachtsfunctionaris: Person
    holiday_weeks: list[DateRange] = []


class Wijkteam(Strict):
    """A sociaal wijkteam and the postcode areas it serves."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    postcode_areas: list[str] = Field(min_length=1)
    partners: list[str] = Field(min_length=1)
    contacts: list[RoleContact] = Field(min_length=1)


class Overleg(Strict):
    """A consultation body led by the municipality (OOV, the coordinator)."""

    name: str
    partners: list[str] = Field(min_length=1)
    contacts: list[RoleContact] = Field(min_length=1)


class MunicipalityInfo(Strict):
    """Who the file is for."""

    id: str
    name: str
    region: Region


class MunicipalityFile(Strict):
    """The whole file as written."""

    municipality: MunicipalityInfo
    partners: list[Partner] = Field(min_length=1)
    schools: list[School] = []
    wijkteams: list[Wijkteam] = []
    oov: Overleg
    coordinator: Overleg
    extra_closed_days: list[date] = []
    routing: dict[str, Any] = {}
    sla: dict[str, Any] = {}
    notify: dict[str, Any] = {}


@dataclass(frozen=True)
class Body:
    """A consultation body a signal can be assigned to."""

    id: str
    route: Route
    name: str
    partner_ids: frozenset[str]
    contacts: tuple[RoleContact, ...]
    school_brin: str | None = None


@dataclass(frozen=True)
class Municipality:
    """The validated file with its look-ups."""

    raw: MunicipalityFile
    source: Path | None
    partners: dict[str, Partner]
    schools: dict[str, School]
    bodies: dict[str, Body]
    body_by_postcode: dict[str, str]
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)

    def partner_by_token(self, token: str) -> Partner | None:
        """The partner whose token hash matches, compared in constant time."""
        candidate = hash_token(token)
        found: Partner | None = None
        for partner in self.partners.values():
            for stored in partner.token_hashes:
                if hmac.compare_digest(candidate, stored):
                    found = partner
        return found

    @cached_property
    def partner_ids_by_contact_email(self) -> dict[str, frozenset[str]]:
        """The partners whose contact a (lower-case) address is: notify asks this for every mail."""
        found: dict[str, set[str]] = {}
        for partner in self.partners.values():
            found.setdefault(str(partner.contact.email).lower(), set()).add(partner.id)
        return {address: frozenset(ids) for address, ids in found.items()}

    @cached_property
    def digest_partner_ids(self) -> frozenset[str]:
        """The partners that asked for a daily digest instead of single e-mails: notify asks this for every mail."""
        return frozenset(p.id for p in self.partners.values() if p.mail_preference == "daily_digest")

    @cached_property
    def known_partner_ids_by_body(self) -> dict[str, frozenset[str]]:
        """Per body, its partners that the file defines (a body may name one it does not)."""
        known = frozenset(self.partners)  # a frozenset: `& dict.keys()` would hand out mutable sets
        return {body.id: body.partner_ids & known for body in self.bodies.values()}

    def roles_of_person(self, email: str, partner_id: str) -> dict[str, str]:
        """The bodies a person acts for, with the role: the file lists them among the body's contacts and their
        organisation is one of the body's partners."""
        wanted = email.lower()
        return {body.id: contact.role for body in self.bodies.values() if partner_id in body.partner_ids
                for contact in body.contacts if contact.email.lower() == wanted}

    def zat_body(self, brin: str) -> Body | None:
        """The ZAT of a school."""
        return self.bodies.get(f"zat-{brin.lower()}")

    def meldcode_body(self, brin: str) -> Body | None:
        """The aandachtsfunctionaris of a school (meldcode path)."""
        return self.bodies.get(f"meldcode-{brin.lower()}")

    def wijkteam_body(self, postcode_area: str) -> Body | None:
        """The wijkteam serving a postcode area."""
        body_id = self.body_by_postcode.get(postcode_area)
        return self.bodies[body_id] if body_id else None

    def line_of(self, *path: str | int) -> int | None:
        """Line number (1-based) of the deepest known node on a path."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


class ConfigError(ValueError):
    """The municipality file is invalid; each problem names its line."""

    def __init__(self, source: str, problems: list[tuple[int | None, str]]) -> None:
        self.problems = problems
        lines = [f"{source}:{line or '?'}: {message}" for line, message in problems]
        super().__init__("\n".join(lines))


def hash_token(token: str) -> str:
    """The stored form of a partner token."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _to_python(node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _to_python(key_node, (*path, "<key>"), {})
            result[key] = _to_python(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node, deep=True)


def parse_yaml_with_lines(text: str, source: str) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """Parse YAML into Python values and a map from path to line number."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(source, [(mark.line + 1 if mark else None, f"not valid YAML: {exc}")]) from None
    if node is None:
        raise ConfigError(source, [(1, "the file is empty")])
    return _to_python(node, (), lines), lines


def duplicate_keys(text: str) -> list[tuple[int, str]]:
    """(line, message) for every mapping key written twice: YAML keeps the last, so the first has no effect."""
    found: list[tuple[int, str]] = []

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                where = f"{path}.{key}" if path else str(key)
                if key is not None and key in seen:
                    found.append((seen[key], f"{where} (line {seen[key]}) has no effect: it is written again "
                                             f"on line {line}, which replaces it"))
                if key is not None:
                    seen[key] = line
                walk(value_node, where)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if root is not None:
        walk(root, "")
    return found


def _line(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _school_bodies(
    raw: MunicipalityFile, *, lines: dict[tuple[str | int, ...], int],
    need_partner: Callable[[str, tuple[str | int, ...]], None], problems: list[tuple[int | None, str]],
    bodies: dict[str, Body],
) -> dict[str, School]:
    """The schools by BRIN; adds each school's ZAT and meldcode bodies to bodies and its faults to problems."""
    schools: dict[str, School] = {}
    for i, school in enumerate(raw.schools):
        need_partner(school.partner, ("schools", i, "partner"))
        if school.brin in schools:
            problems.append((_line(lines, ("schools", i, "brin")), f"school {school.brin} appears twice"))
        schools[school.brin] = school
        key = school.brin.lower()
        bodies[f"zat-{key}"] = Body(
            f"zat-{key}", Route.ZAT, f"ZAT {school.name}", frozenset({school.partner}), tuple(school.zat), school.brin
        )
        af = RoleContact(role="aandachtsfunctionaris", **school.aandachtsfunctionaris.model_dump())
        bodies[f"meldcode-{key}"] = Body(
            f"meldcode-{key}", Route.MELDCODE, f"Aandachtsfunctionaris {school.name}",
            frozenset({school.partner}), (af,), school.brin,
        )
    return schools


def _wijkteam_bodies(
    raw: MunicipalityFile, *, lines: dict[tuple[str | int, ...], int],
    need_partner: Callable[[str, tuple[str | int, ...]], None], problems: list[tuple[int | None, str]],
    bodies: dict[str, Body],
) -> dict[str, str]:
    """The wijkteam body by postcode area; adds each wijkteam's body to bodies and its faults to problems."""
    body_by_postcode: dict[str, str] = {}
    for i, team in enumerate(raw.wijkteams):
        for j, pid in enumerate(team.partners):
            need_partner(pid, ("wijkteams", i, "partners", j))
        body_id = f"wijkteam-{team.id}" if not team.id.startswith("wijkteam") else team.id
        bodies[body_id] = Body(body_id, Route.WIJKTEAM, team.name, frozenset(team.partners), tuple(team.contacts))
        for j, area in enumerate(team.postcode_areas):
            loc = ("wijkteams", i, "postcode_areas", j)
            if not (len(area) == 4 and area.isdigit()):
                problems.append((_line(lines, loc), f"postcode area {area!r} is not four digits"))
            elif area in body_by_postcode:
                problems.append((_line(lines, loc), f"postcode area {area} is served twice"))
            body_by_postcode[area] = body_id
    return body_by_postcode


def build_municipality(
    data: Any, *, lines: dict[tuple[str | int, ...], int] | None = None, source: str = "<memory>"
) -> Municipality:
    """Validate parsed data and build the look-ups; raise ConfigError naming lines."""
    lines = lines or {}
    try:
        raw = MunicipalityFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [
            (_line(lines, tuple(err["loc"])), f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
            for err in exc.errors()
        ]) from None
    problems: list[tuple[int | None, str]] = []
    partners: dict[str, Partner] = {}
    for i, partner in enumerate(raw.partners):
        if partner.id in partners:
            problems.append((_line(lines, ("partners", i, "id")), f"partner id {partner.id!r} appears twice"))
        partners[partner.id] = partner

    def need_partner(pid: str, loc: tuple[str | int, ...]) -> None:
        if pid not in partners:
            problems.append((_line(lines, loc), f"unknown partner {pid!r}"))

    bodies: dict[str, Body] = {}
    schools = _school_bodies(raw, lines=lines, need_partner=need_partner, problems=problems, bodies=bodies)
    for i, partner in enumerate(raw.partners):
        if partner.kind == "school" and partner.school_brin not in schools:
            problems.append((_line(lines, ("partners", i)), f"school partner {partner.id!r} names no known school"))
    body_by_postcode = _wijkteam_bodies(raw, lines=lines, need_partner=need_partner, problems=problems,
                                        bodies=bodies)
    for name, route in (("oov", Route.OOV), ("coordinator", Route.COORDINATOR)):
        overleg: Overleg = getattr(raw, name)
        for j, pid in enumerate(overleg.partners):
            need_partner(pid, (name, "partners", j))
        bodies[name] = Body(name, route, overleg.name, frozenset(overleg.partners), tuple(overleg.contacts))
    if problems:
        raise ConfigError(source, problems)
    municipality = Municipality(
        raw=raw, source=None, partners=partners, schools=schools, bodies=bodies,
        body_by_postcode=body_by_postcode, lines=lines,
    )
    for section, validator in SECTION_VALIDATORS.items():
        if getattr(raw, section):
            problems += _section_validator(validator)(municipality)
    if problems:
        raise ConfigError(source, problems)
    return municipality


# Free sections validated by the service that owns their meaning, named by "module:function" and
# imported only when a file has that section (shared/ does not depend on services/ at import time).
# Each validator takes the Municipality and returns [(line, message), ...].
SECTION_VALIDATORS: dict[str, str] = {
    "routing": "services.routing.rules:validate_section",
    "sla": "services.feedback.sla_config:validate_section",
}


def _section_validator(spec: str) -> Any:
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def load_municipality(path: Path) -> Municipality:
    """Read, parse and validate a municipality file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [(None, f"cannot read the file: {exc.strerror}")]) from None
    data, lines = parse_yaml_with_lines(text, str(path))
    municipality = build_municipality(data, lines=lines, source=str(path))
    return Municipality(**{**municipality.__dict__, "source": path})
