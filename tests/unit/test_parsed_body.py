"""shared.http.parsed_body: one rule for every JSON body — no JSON is a 400 bad_json, a wrong one the caller's 422."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from shared.http import PROBLEM_JSON, parsed_body, problem


class Body(BaseModel):
    n: int


def invalid(exc: ValidationError) -> JSONResponse:
    return problem(422, code="validation_failed", title="Ongeldig verzoek", detail=f"{len(exc.errors())} fout")


def test_a_valid_body_is_the_model() -> None:
    assert parsed_body(Body, b'{"n": 3}', invalid=invalid) == Body(n=3)


def test_no_json_is_a_400_problem_whatever_the_model() -> None:
    for raw in (b"{", b"", b"niet json"):
        answer = parsed_body(Body, raw, invalid=invalid)
        assert isinstance(answer, JSONResponse) and answer.status_code == 400
        assert answer.media_type == PROBLEM_JSON
        assert json.loads(answer.body)["code"] == "bad_json"


def test_json_of_the_wrong_shape_gets_the_callers_answer() -> None:
    answer = parsed_body(Body, b'{"n": "drie"}', invalid=invalid)
    assert isinstance(answer, JSONResponse) and answer.status_code == 422
    assert json.loads(answer.body)["detail"] == "1 fout"
