"""The API documents pass the linters partners' architects run: Spectral with Logius' NL API Design Rules
ruleset on every OpenAPI document, and `asyncapi validate` on the AsyncAPI document (tools/lint, `make setup`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from schakel.schema import openapi_documents
from shared.settings import REPO_ROOT

LINT = REPO_ROOT / "tools" / "lint"
SPECTRAL = LINT / "node_modules" / ".bin" / "spectral"
ASYNCAPI = LINT / "node_modules" / ".bin" / "asyncapi"
RULESET = LINT / "nlgov-adr-ruleset.yaml"
SCHEMA_DIR = REPO_ROOT / "docs" / "schema"


def _tool(path: Path) -> str:
    assert path.exists(), f"{path.name} is not installed: run `make setup` (npm ci in tools/lint)"
    return str(path)


def spectral(*documents: Path) -> list[dict[str, Any]]:
    """Spectral's findings (severity 0 = error) on the documents, with the vendored ADR ruleset."""
    result = subprocess.run(
        [_tool(SPECTRAL), "lint", "--ruleset", str(RULESET), "--format", "json", "--quiet", "--fail-severity",
         "error", *map(str, documents)],
        capture_output=True, text=True, timeout=120, check=False, cwd=LINT,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout or "[]")


def test_every_openapi_document_is_committed_and_lints_without_errors_against_the_adr_ruleset() -> None:
    documents = [SCHEMA_DIR / "openapi" / f"{service}.json" for service in openapi_documents()]
    assert documents and all(d.exists() for d in documents), "run `schakel schema`"
    findings = spectral(*documents)
    errors = [f"{Path(f['source']).name} {'.'.join(map(str, f['path']))}: {f['code']} {f['message']}"
              for f in findings if f["severity"] == 0]
    assert not errors, "\n".join(errors)


def test_the_ruleset_catches_what_the_design_rules_forbid(tmp_path: Path) -> None:
    # FastAPI's own kind of document: no servers, no contact, version "1", {"detail": ...} errors, no API-Version.
    bad = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"},
           "paths": {"/v1/Signals/": {"post": {"responses": {
               "200": {"description": "ok"},
               "422": {"description": "fout", "content": {"application/json": {"schema": {"type": "object"}}}},
           }}}}}
    document = tmp_path / "bad.json"
    document.write_text(json.dumps(bad))
    codes = {f["code"] for f in spectral(document) if f["severity"] == 0}
    assert {"oas3-api-servers", "info-contact", "nlgov:semver", "nlgov:missing-header", "nlgov:use-problem-schema",
            "nlgov:paths-kebab-case", "path-keys-no-trailing-slash", "nlgov:problem-invalid-input"} <= codes


def _asyncapi_validate(document: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASYNCAPI_METRICS_CONFIG_PATH": str(LINT / "asyncapi-analytics.json"), "CI": "true"}
    return subprocess.run([_tool(ASYNCAPI), "validate", str(document), "--fail-severity", "error"],
                          capture_output=True, text=True, timeout=120, check=False, env=env, cwd=LINT)


def test_the_asyncapi_document_is_valid() -> None:
    result = _asyncapi_validate(SCHEMA_DIR / "asyncapi.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout, result.stdout


def test_asyncapi_validate_refuses_a_broken_document(tmp_path: Path) -> None:
    broken = (SCHEMA_DIR / "asyncapi.yaml").read_text(encoding="utf-8").replace("address:", "adress:", 1)
    document = tmp_path / "asyncapi.yaml"
    document.write_text(broken, encoding="utf-8")
    (tmp_path / "events").symlink_to(SCHEMA_DIR / "events")
    result = _asyncapi_validate(document)
    assert result.returncode != 0, result.stdout
