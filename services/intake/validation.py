"""The request body of POST /v1/signals and the checks that turn bad input into clear errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator, model_validator

from shared.events import Urgency
from shared.taxonomy import CATEGORIES, FLAGS, LEGAL_BASES

MAX_BODY_BYTES = 64 * 1024
MAX_SUMMARY = 500


class InputError(ValueError):
    """A field is wrong; carries a stable English code and a Dutch message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def elfproef(bsn: str) -> bool:
    """Whether a BSN passes the eleven test (9 digits, weighted sum divisible by 11)."""
    if len(bsn) != 9 or not bsn.isdigit():
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return sum(int(d) * w for d, w in zip(bsn, weights, strict=True)) % 11 == 0 and bsn != "000000000"


class SubjectIn(BaseModel):
    """Identifiers of the child; they are pseudonymised and dropped at intake."""

    model_config = ConfigDict(extra="forbid")

    bsn: str | None = Field(default=None, json_schema_extra={"pattern": "^[0-9]{9}$"})
    school_brin: str | None = Field(default=None, pattern=r"^[0-9]{2}[A-Z]{2}$")
    pupil_ref: str | None = Field(default=None, min_length=1, max_length=64)
    family_ref: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("bsn")
    @classmethod
    def _bsn(cls, value: str | None) -> str | None:
        if value is not None and not elfproef(value):
            raise InputError("invalid_bsn", "Het BSN is ongeldig (voldoet niet aan de elfproef).")
        return value

    @model_validator(mode="after")
    def _identified(self) -> SubjectIn:
        if not self.bsn and not (self.school_brin and self.pupil_ref):
            raise InputError(
                "missing_identifiers", "Geef een BSN, of een BRIN-code samen met een leerlingnummer."
            )
        return self


class ReporterIn(BaseModel):
    """The professional who gets the terugkoppeling."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class SignalIn(BaseModel):
    """POST /v1/signals, as in api.md."""

    model_config = ConfigDict(extra="forbid")

    # json_schema_extra documents the rules in the OpenAPI; the validators below enforce them with Dutch codes.
    # ([*sorted(...)] so the codes type as JSON values: json_schema_extra wants a list[JsonValue].)
    category: str = Field(json_schema_extra={"enum": [*sorted(CATEGORIES)]})
    urgency: Urgency | None = None
    subject: SubjectIn
    flags: list[str] = Field(default=[], json_schema_extra={"items": {"type": "string", "enum": [*sorted(FLAGS)]}})
    postcode_area: str | None = Field(default=None, json_schema_extra={"pattern": "^[0-9]{4}$"})
    summary: str | None = Field(default=None, json_schema_extra={"maxLength": MAX_SUMMARY})
    observed_at: datetime | None = None
    reporter: ReporterIn | None = None
    legal_basis: str = Field(default="meldrecht", json_schema_extra={"enum": list(LEGAL_BASES)})
    parents_informed: bool = False

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise InputError("unknown_category", "Onbekende categorie; kies een code uit de taxonomie.")
        return value

    @field_validator("flags")
    @classmethod
    def _flags(cls, value: list[str]) -> list[str]:
        unknown = [flag for flag in value if flag not in FLAGS]
        if unknown:
            raise InputError("unknown_flag", f"Onbekende vlag(gen); toegestaan: {', '.join(sorted(FLAGS))}.")
        return sorted(set(value))

    @field_validator("postcode_area")
    @classmethod
    def _postcode(cls, value: str | None) -> str | None:
        if value is not None and not (len(value) == 4 and value.isdigit()):
            raise InputError("invalid_postcode_area", "Het postcodegebied bestaat uit precies vier cijfers.")
        return value

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_SUMMARY:
            raise InputError("summary_too_long", f"De samenvatting is langer dan {MAX_SUMMARY} tekens.")
        return value

    @field_validator("observed_at")
    @classmethod
    def _observed(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise InputError("naive_datetime", "Geef het tijdstip met tijdzone (ISO 8601).")
        if value > datetime.now(UTC):
            raise InputError("observed_in_future", "Het tijdstip van de waarneming ligt in de toekomst.")
        return value

    @field_validator("legal_basis")
    @classmethod
    def _legal_basis(cls, value: str) -> str:
        if value not in LEGAL_BASES:
            raise InputError("unknown_legal_basis", f"Onbekende grondslag; toegestaan: {', '.join(LEGAL_BASES)}.")
        return value


_PYDANTIC_MESSAGES = {
    "missing": ("missing_field", "Dit veld is verplicht."),
    "extra_forbidden": ("unknown_field", "Dit veld is onbekend."),
    "string_type": ("wrong_type", "Verwacht een tekst."),
    "bool_type": ("wrong_type", "Verwacht true of false."),
    "list_type": ("wrong_type", "Verwacht een lijst."),
    "model_type": ("wrong_type", "Verwacht een object."),
    "dict_type": ("wrong_type", "Verwacht een object."),
    "enum": ("invalid_urgency", "Onbekende urgentie; kies U0, U1, U2 of U3."),
    "string_pattern_mismatch": ("invalid_format", "De waarde heeft niet het juiste formaat."),
    "string_too_short": ("too_short", "De waarde is te kort."),
    "string_too_long": ("too_long", "De waarde is te lang."),
    "value_error": ("invalid_value", "De waarde is ongeldig."),
    "datetime_parsing": ("invalid_datetime", "Geef een geldig tijdstip (ISO 8601)."),
    "datetime_from_date_parsing": ("invalid_datetime", "Geef een geldig tijdstip (ISO 8601)."),
    "datetime_type": ("invalid_datetime", "Geef een geldig tijdstip (ISO 8601)."),
}


def describe_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Turn pydantic errors into {field, code, message} in Dutch, without echoing input values."""
    result = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"] if part != "body") or "body"
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, InputError):
            code, message = ctx_error.code, ctx_error.message
        else:
            code, message = _PYDANTIC_MESSAGES.get(err["type"], ("invalid_value", "De waarde is ongeldig."))
            if err["type"] == "value_error" and "email" in field:
                code, message = "invalid_email", "Het e-mailadres is ongeldig."
        result.append({"field": field, "code": code, "message": message})
    return result


def parse_signal(payload: Any) -> SignalIn:
    """Validate a decoded JSON body; raises pydantic's ValidationError."""
    return SignalIn.model_validate(payload)
