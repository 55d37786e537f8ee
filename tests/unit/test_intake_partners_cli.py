"""`schakel partners add-token`: the token is printed once, only its hash is written, the rest stays as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schakel.cli import main
from schakel.partners_cli import PartnerFileError, add_token_hash
from shared.municipality import hash_token, load_municipality
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "gemeente-voorbeeld.yaml"

FLOW = """\
partners:
  - id: school-a   # de school
    kind: school
    token_hashes: [sha256:aa]
  - id: politie
    token_hashes: []
"""
BLOCK = """\
partners:
  - id: school-a
    token_hashes:
      - sha256:aa
      # oude sleutel hierboven
    kind: school
"""
MISSING = """\
partners:
  - id: school-a
    kind: school
"""


def test_a_hash_is_appended_to_a_flow_list_and_comments_survive() -> None:
    result = add_token_hash(FLOW, partner_id="school-a", token_hash="sha256:bb")
    assert "token_hashes: [sha256:aa, sha256:bb]" in result and "# de school" in result
    assert result.replace(", sha256:bb", "") == FLOW


def test_a_hash_goes_into_an_empty_flow_list() -> None:
    result = add_token_hash(FLOW, partner_id="politie", token_hash="sha256:cc")
    assert yaml.safe_load(result)["partners"][1]["token_hashes"] == ["sha256:cc"]


def test_a_hash_is_appended_to_a_block_list_with_the_same_indentation() -> None:
    result = add_token_hash(BLOCK, partner_id="school-a", token_hash="sha256:bb")
    assert yaml.safe_load(result)["partners"][0] == {"id": "school-a", "token_hashes": ["sha256:aa", "sha256:bb"],
                                                     "kind": "school"}
    assert "      - sha256:bb\n" in result and "# oude sleutel hierboven" in result


def test_a_partner_without_token_hashes_gets_the_key() -> None:
    result = add_token_hash(MISSING, partner_id="school-a", token_hash="sha256:bb")
    assert yaml.safe_load(result)["partners"][0]["token_hashes"] == ["sha256:bb"]


def test_an_unknown_partner_is_refused() -> None:
    with pytest.raises(PartnerFileError):
        add_token_hash(FLOW, partner_id="nobody", token_hash="sha256:bb")


def test_add_token_prints_a_token_that_authenticates_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gemeente.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["partners", "add-token", "leerplicht", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    text = config.read_text(encoding="utf-8")
    assert token not in text and hash_token(token) in text
    partner = load_municipality(config).partner_by_token(token)
    assert partner is not None and partner.id == "leerplicht"
    changed = [line for line in text.splitlines() if line not in EXAMPLE.read_text(encoding="utf-8").splitlines()]
    assert len(changed) == 1


def test_add_token_for_an_unknown_partner_fails_and_leaves_the_file_alone(tmp_path: Path) -> None:
    config = tmp_path / "gemeente.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["partners", "add-token", "niemand", "--config", str(config)]) == 1
    assert config.read_text(encoding="utf-8") == EXAMPLE.read_text(encoding="utf-8")
