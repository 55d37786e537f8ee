"""bench/results/latest.json names, for every key, the bench run that measured it."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import merge_results, write_results

CHAIN_RUN = {"date": "2026-12-02T01:00:00+00:00", "git_commit": "aaa", "machine": {"nproc": 2}}
REPLAY_RUN = {"date": "2026-11-30T09:00:00+00:00", "git_commit": "bbb", "machine": {"nproc": 2}}


def test_a_bench_is_named_as_the_source_of_its_keys_and_the_other_keys_keep_theirs() -> None:
    after_replay = merge_results({}, {"replay_168k_s": 39.2}, bench="bench.replay", measured=REPLAY_RUN)
    after_chain = merge_results(after_replay, {"e2e_signals_per_s": 63.9, "lost": 0}, bench="bench.chain",
                                measured=CHAIN_RUN)

    assert after_chain["replay_168k_s"] == 39.2
    assert after_chain["e2e_signals_per_s"] == 63.9
    assert after_chain["measured_by"] == {
        "bench.chain": {**CHAIN_RUN, "keys": ["e2e_signals_per_s", "lost"]},
        "bench.replay": {**REPLAY_RUN, "keys": ["replay_168k_s"]},
    }


def test_a_key_written_by_another_bench_leaves_the_first_bench_s_list() -> None:
    first = merge_results({}, {"lost": 1, "replay_168k_s": 40.0}, bench="bench.replay", measured=REPLAY_RUN)

    second = merge_results(first, {"lost": 0}, bench="bench.chain", measured=CHAIN_RUN)

    assert second["measured_by"]["bench.replay"]["keys"] == ["replay_168k_s"]
    assert second["measured_by"]["bench.chain"]["keys"] == ["lost"]


def test_the_file_is_written_with_the_run_s_commit_and_date(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"replay_168k_s": 39.2}), encoding="utf-8")

    write_results({"e2e_signals_per_s": 63.9}, bench="bench.chain", path=path)

    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["replay_168k_s"] == 39.2
    source = written["measured_by"]["bench.chain"]
    assert source["keys"] == ["e2e_signals_per_s"]
    assert source["git_commit"] and source["date"].startswith("20")
    assert source["machine"]["nproc"] >= 1
