"""schemathesis fuzzes intake's OpenAPI document against a running intake: no 5xx, no schema violations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schakel.kafka_broker import Broker
from tests.integration.intake_support import start_intake, token, write_municipality

pytestmark = pytest.mark.kafka

# positive_data_acceptance is left out on purpose: the elfproef, "not in the future" and "BSN or BRIN + pupil
# number" cannot be said in JSON Schema, so schema-valid bodies are rightly refused with a documented 422.
CHECKS = ",".join((
    "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
    "response_schema_conformance", "negative_data_rejection", "missing_required_header", "unsupported_method",
    "ignored_auth",
))


def test_the_openapi_document_holds_under_fuzzing_without_5xx_or_schema_violations(
    kafka: Broker, tmp_path: Path
) -> None:
    intake = start_intake(tmp_path, bootstrap=kafka.bootstrap, config=write_municipality(tmp_path))
    try:
        cli = Path(sys.executable).with_name("schemathesis")
        result = subprocess.run(
            [str(cli), "run", f"{intake.base_url}/openapi.json", "--checks", CHECKS,
             "--header", f"Authorization: Bearer {token('obs-de-linde')}", "--max-examples", "150",
             "--phases", "examples,coverage,fuzzing", "--workers", "2", "--request-timeout", "30",
             "--seed", "20261120", "--no-color"],
            capture_output=True, text=True, timeout=540, check=False,
        )
        print(result.stdout[-4000:])
        assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
        assert "Traceback" not in intake.log_path.read_text()
    finally:
        intake.stop()
