"""People call the APIs with the access token of the real identity provider (ADR 0017): intake and feedback
check it against the provider's keys, decide per person from the municipality file, and audit the person."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningIdp, start_broker
from tests.harness import System, read_topic, wait_until
from tests.idp_support import person_tokens

SUMMARY = "Canarykind huilt elke ochtend bij het hek"
TEACHER = "juf.jansen@delinde.example"
IB = "ib@delinde.example"
OTHER_IB = "ib@hetanker.example"
DIRECTOR = "directie@delinde.example"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, idp: RunningIdp) -> Iterator[System]:
    broker = start_broker(tmp_path_factory.mktemp("kafka-persons"))
    stack = System(broker=broker, root=tmp_path_factory.mktemp("persons"),
                   extra_env={"SCHAKEL_OIDC_ISSUER": idp.issuer}).start(["intake", "routing", "feedback"])
    yield stack
    stack.stop()
    broker.stop(kill=True)


def bearer(idp: RunningIdp, email: str) -> dict[str, str]:
    tokens = person_tokens(idp.issuer, client_id=idp.tests.client_id, client_secret=idp.tests.client_secret,
                           email=email)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_people_act_for_what_the_file_gives_them_and_the_audit_names_them(system: System, idp: RunningIdp) -> None:
    teacher, ib, other_ib, director = (bearer(idp, who) for who in (TEACHER, IB, OTHER_IB, DIRECTOR))
    body = {"category": "EMO", "subject": {"school_brin": "12AB", "pupil_ref": "P-1"}, "summary": SUMMARY,
            "reporter": {"name": "Iemand Anders", "email": "iemand@delinde.example"}, "legal_basis": "meldrecht"}
    answer = httpx.post(system.url("intake", "/v1/signals"), json=body, headers=teacher, timeout=30)
    assert answer.status_code == 202, answer.text
    signal_id = answer.json()["signal_id"]
    url = system.url("feedback", f"/v1/signals/{signal_id}")

    def readable() -> dict[str, object] | None:
        got = httpx.get(url, headers=ib, timeout=30)
        return got.json() if got.status_code == 200 else None

    seen_by_ib = wait_until(readable, timeout=60, what="the signal in feedback")
    assert seen_by_ib["viewer"] == {"reporter": False, "body": True, "role": "intern_begeleider"}
    assert seen_by_ib["summary"] == SUMMARY
    # The teacher reported it: the reporter is the person of the token, whatever the body said.
    seen_by_teacher = httpx.get(url, headers=teacher, timeout=30).json()
    assert seen_by_teacher["viewer"]["reporter"] is True and "summary" not in seen_by_teacher
    refused = httpx.post(f"{url}/events", json={"type": "acknowledged"}, headers=teacher, timeout=30)
    assert (refused.status_code, refused.json()["code"]) == (403, "only_assigned_body")
    # Another school's IB'er and a colleague outside the ZAT: not found, as for a foreign partner.
    for stranger in (other_ib, director):
        hidden = httpx.get(url, headers=stranger, timeout=30)
        assert hidden.status_code == 404 and SUMMARY not in hidden.text
    acted = httpx.post(f"{url}/events", json={"type": "acknowledged"}, headers=ib, timeout=30)
    assert acted.status_code == 200, acted.text
    assert acted.json()["history"][-1]["person"] == IB
    # A token that is not the provider's is no person: 401 (one changed character in the signature).
    forged = ib["Authorization"][:-2] + ("A" if ib["Authorization"][-2] != "A" else "B") + ib["Authorization"][-1]
    assert httpx.get(url, headers={"Authorization": forged}, timeout=30).status_code == 401
    # Partner systems keep their tokens.
    assert system.get_signal("obs-de-linde", signal_id).status_code == 200

    def audit() -> list[dict[str, object]]:
        found = [json.loads(r.value)["data"] for r in read_topic(system.broker.bootstrap, "audit.log")]
        return [a for a in found if a["signal_id"] == signal_id]

    records = wait_until(lambda: (a := audit()) and len(a) >= 7 and a, timeout=30, what="audit records")
    by_person = {(a["actor_person"], a["action"], a["outcome"], a["on_behalf_of"]) for a in records}
    assert (IB, "read", "allowed", "body:zat-12ab") in by_person
    assert (IB, "acknowledged", "allowed", "body:zat-12ab") in by_person
    assert (TEACHER, "read", "allowed", "reporter") in by_person
    assert (TEACHER, "acknowledged", "refused", "reporter") in by_person
    assert (OTHER_IB, "read", "refused", "none") in by_person
    assert (DIRECTOR, "read", "refused", "none") in by_person
    assert (None, "read", "allowed", "reporter+body:zat-12ab") in by_person  # the school's system
    person_records = [a for a in records if a["actor_person"]]
    assert all(a["actor_person_id"] for a in person_records)
    assert {a["actor_partner_id"] for a in person_records} == {"obs-de-linde", "cbs-het-anker"}
