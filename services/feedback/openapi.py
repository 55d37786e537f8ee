"""The OpenAPI document of feedback's partner routes, every answer written out."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.feedback.api import EventIn
from services.feedback.privacy_api import ErasureIn
from shared.openapi import component_schemas, document, problem_answer, success_answer

SIGNAL_ROUTE = "/v1/signals/{signal_id}"
EVENTS_ROUTE = "/v1/signals/{signal_id}/events"
ERASURES_ROUTE = "/v1/privacy/erasures"

_RETRY = {"Retry-After": {"schema": {"type": "string"}, "required": True}}
_UNAUTHENTICATED = problem_answer("Geen of een onbekend token.",
                                  {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}})
_NOT_FOUND = problem_answer("Dit signaal bestaat niet of is niet voor deze partner zichtbaar.")
_TEXT = {"type": "string"}
SIGNAL_VIEW: dict[str, Any] = {
    "type": "object",
    "description": "Wat een partner van een signaal mag zien; de samenvatting alleen voor de toegewezen instantie.",
    "required": ["signal_id", "reference", "category", "urgency", "route", "body", "status", "match", "routing",
                 "deadlines", "feedback", "history"],
    "properties": {
        "signal_id": {"type": "string", "format": "uuid"},
        "reference": _TEXT,
        "category": _TEXT,
        "urgency": {"type": "string", "enum": ["U0", "U1", "U2", "U3"]},
        "route": _TEXT,
        "body": {"type": "object", "properties": {"id": _TEXT, "name": _TEXT}},
        "status": _TEXT,
        "match": {"type": "boolean"},
        "routing": {"type": "object", "properties": {"rule_id": _TEXT, "description": _TEXT,
                                                     "facts": {"type": "object"}}},
        "deadlines": {"type": "array", "items": {"type": "object", "properties": {
            "clock": _TEXT, "due_at": {"type": "string", "format": "date-time"}, "rule": _TEXT, "policy": _TEXT,
            "state": _TEXT}}},
        "feedback": {"type": "array", "items": _TEXT},
        "history": {"type": "array", "items": {"type": "object", "properties": {
            "type": _TEXT, "status": _TEXT, "actor": _TEXT, "at": {"type": "string", "format": "date-time"},
            "outcome": _TEXT, "reason": _TEXT}}},
        "summary": _TEXT,
    },
}
_SIGNAL_ID = {"name": "signal_id", "in": "path", "required": True, "description": "UUID van het signaal",
              "schema": {"type": "string", "format": "uuid"}}


def _read() -> dict[str, Any]:
    return {
        "summary": "De stand van een signaal",
        "operationId": "get_signal",
        "security": [{"bearer": []}],
        "parameters": [_SIGNAL_ID],
        "responses": {
            "200": success_answer("De stand van het signaal.", schema={"$ref": "#/components/schemas/SignalView"}),
            "400": problem_answer("De signaal-id is geen UUID."),
            "401": _UNAUTHENTICATED,
            "404": _NOT_FOUND,
            "503": problem_answer("De stand of de vastlegging van de toegang is nu niet beschikbaar.", _RETRY),
        },
    }


def _change() -> dict[str, Any]:
    return {
        "summary": "Een signaal oppakken, terugkoppelen, afsluiten, ...",
        "operationId": "post_signal_event",
        "security": [{"bearer": []}],
        "parameters": [_SIGNAL_ID],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventIn"}}}},
        "responses": {
            "200": success_answer("De wijziging is doorgevoerd; de nieuwe stand.",
                                  schema={"$ref": "#/components/schemas/SignalView"}),
            "400": problem_answer("De signaal-id is geen UUID, of de body is geen geldige JSON."),
            "401": _UNAUTHENTICATED,
            "403": problem_answer("Het token mist de scope signals:update."),
            "404": _NOT_FOUND,
            "409": problem_answer("Deze wijziging past niet bij de huidige stand (current_status en signal "
                                  "geven die)."),
            "422": problem_answer("Een of meer velden zijn ongeldig; errors noemt elk veld."),
            "503": problem_answer("De wijziging is nog niet bevestigd, of de toegang kan niet worden vastgelegd.",
                                  _RETRY),
        },
    }


def _erase() -> dict[str, Any]:
    return {
        "summary": "Alle gegevens over een kind wissen",
        "description": "De functionaris gegevensbescherming wist een kind (AVG art. 17): de sleutels van al zijn "
                       "signalen worden vernietigd; daarna bestaan die signalen voor iedereen niet meer (404).",
        "operationId": "post_privacy_erasure",
        "security": [{"bearer": []}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErasureIn"}}}},
        "responses": {
            "202": success_answer("De sleutels zijn vernietigd; de diensten ruimen hun gegevens op.",
                                  schema={"$ref": "#/components/schemas/ErasureOut"}),
            "400": problem_answer("De body is geen geldige JSON."),
            "401": _UNAUTHENTICATED,
            "403": problem_answer("Het token mist de scope privacy:erase."),
            "422": problem_answer("Noem het kind met precies één van: BSN, school en leerlingnummer, pseudoniem."),
            "503": problem_answer("Het wissen kon nu niet worden vastgelegd.", _RETRY),
        },
    }


ERASURE_OUT: dict[str, Any] = {
    "type": "object",
    "required": ["erasure_id", "status", "keys_destroyed"],
    "properties": {"erasure_id": {"type": "string", "format": "uuid"}, "status": {"type": "string"},
                   "keys_destroyed": {"type": "integer"}},
}


def feedback_document() -> dict[str, Any]:
    """The written-out contract of feedback's routes (signals, and the privacy officer's erasure)."""
    schemas = component_schemas(EventIn, ErasureIn)
    schemas["SignalView"] = SIGNAL_VIEW
    schemas["ErasureOut"] = ERASURE_OUT
    return document(title="Schakel feedback",
                    description="Schakel feedback: partners lezen de stand van een signaal en werken het bij.",
                    paths={SIGNAL_ROUTE: {"get": _read()}, EVENTS_ROUTE: {"post": _change()},
                           ERASURES_ROUTE: {"post": _erase()}}, schemas=schemas)


def install_openapi(api: FastAPI) -> None:
    """Replace FastAPI's generated document with the written-out one."""
    doc = feedback_document()
    api.openapi = lambda: doc  # type: ignore[method-assign]
