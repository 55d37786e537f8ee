"""Prometheus, Grafana and docker-compose configuration, checked with promtool and docker-compose."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from schakel.prometheus_config import (
    COMPOSE_TARGETS,
    LOCAL_TARGETS,
    SERVICES,
    committed_configs,
    render_config,
    scraped_targets,
)

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "infra" / "prometheus"
RULES = PROMETHEUS / "rules" / "schakel.yml"
GRAFANA = REPO / "infra" / "grafana"
COMPOSE_FILE = REPO / "docker-compose.yml"

EXPECTED_ALERTS = {
    "ServiceDown",
    "ConsumerLagGrowing",
    "DeadLettersAppearing",
    "EmailPermanentFailureRatioHigh",
    "SlaBreachesRising",
    "NoSignalsForAWorkingDay",
    "FeedbackBeforeClosureBelow100",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"}


# ------------------------------------------------------------------------------------------ helpers


def tool(name: str, package: str) -> str:
    """Path of a command-line tool; fail (never skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed; install it with `apt-get install -y {package}`")
    return path


def run(*args: str | Path, cwd: Path = REPO) -> str:
    """Run a command, fail with its output unless it exits 0, and return its output."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))} exited {result.returncode}:\n{output}"
    return output


def promtool(*args: str | Path) -> str:
    """Run promtool with the given arguments and return its output."""
    return run(tool("promtool", "prometheus"), *args)


@cache
def generator() -> ModuleType:
    """infra/grafana/generate.py, imported by path (infra/ is not a package)."""
    spec = importlib.util.spec_from_file_location("schakel_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def catalogued_metrics() -> frozenset[str]:
    """Every series name docs/metrics.md allows, histogram series included, plus `up`."""
    names = {"up"}
    for line in (REPO / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([a-z_<>]+)`\s*\|\s*(\w+)\s*\|", line)
        if not match:
            continue
        name, kind = match.groups()
        expanded = [name.replace("<svc>", svc) for svc in SERVICES] if "<svc>" in name else [name]
        for metric in expanded:
            names.add(metric)
            if kind == "histogram":
                names.update(f"{metric}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects by name (selectors by __name__ regex are not counted)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"\b[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed_by_call = text[match.end():].lstrip().startswith("(")
        if not followed_by_call and match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def rules() -> list[dict[str, Any]]:
    """Every rule in rules/schakel.yml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule in rules/schakel.yml."""
    return [rule for rule in rules() if "alert" in rule]


def dashboards() -> dict[str, dict[str, Any]]:
    """Freshly generated dashboards by file name."""
    return generator().build_dashboards()


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panels including those nested in rows."""
    result = []
    for panel in panels:
        result.append(panel)
        result.extend(all_panels(panel.get("panels", [])))
    return result


def check_exprs_parse(exprs: list[str], tmp_path: Path) -> str:
    """Write expressions as recording rules and let `promtool check rules` parse them."""
    doc = {"groups": [{"name": "panel-queries", "rules": [
        {"record": f"schakel_panel_query:{i}", "expr": expr} for i, expr in enumerate(exprs)
    ]}]}
    path = tmp_path / "panel_queries.yml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return promtool("check", "rules", path)


def compose() -> dict[str, Any]:
    """docker-compose.yml with anchors and merge keys resolved."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------- Prometheus


def test_the_local_prometheus_config_passes_promtool_check_config() -> None:
    output = promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert "1 rule files found" in output


def test_the_compose_prometheus_config_passes_promtool_check_config() -> None:
    output = promtool("check", "config", PROMETHEUS / "prometheus.compose.yml")
    assert "1 rule files found" in output


def test_the_committed_prometheus_configs_equal_a_fresh_render() -> None:
    for path, text in committed_configs().items():
        stale = f"{path} is stale: run python -m schakel.prometheus_config"
        assert path.read_text(encoding="utf-8") == text, stale


def test_the_committed_configs_scrape_the_services_and_the_werkbak_every_five_seconds() -> None:
    for path, targets in ((PROMETHEUS / "prometheus.yml", LOCAL_TARGETS),
                          (PROMETHEUS / "prometheus.compose.yml", COMPOSE_TARGETS)):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert config["global"]["scrape_interval"] == "5s"
        assert config["rule_files"] == ["rules/*.yml"]
        scraped = {job["job_name"]: scraped_targets(job) for job in config["scrape_configs"]}
        assert scraped == {name: [target] for name, target in targets.items()}
    assert LOCAL_TARGETS == {"intake": "127.0.0.1:8001", "routing": "127.0.0.1:8002",
                             "feedback": "127.0.0.1:8003", "notify": "127.0.0.1:8004", "werkbak": "127.0.0.1:8005"}


def test_a_config_rendered_for_other_ports_passes_promtool_and_loads_the_rules(tmp_path: Path) -> None:
    targets = {"intake": "127.0.0.1:40001", "routing": "127.0.0.1:40002",
               "feedback": "127.0.0.1:40003", "notify": "127.0.0.1:40004", "werkbak": "127.0.0.1:40005"}
    path = tmp_path / "prometheus.yml"
    path.write_text(render_config(targets=targets, rules_dir=PROMETHEUS / "rules", scrape_interval="1s"),
                    encoding="utf-8")
    output = promtool("check", "config", path)
    assert "1 rule files found" in output
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["global"]["scrape_interval"] == "1s"
    assert [job["static_configs"][0]["targets"] for job in config["scrape_configs"]] == [
        [targets[name]] for name in SERVICES
    ]


def test_render_config_refuses_an_unknown_service() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        render_config(targets={"billing": "127.0.0.1:9"}, rules_dir=Path("rules"))


def test_the_rules_pass_promtool_check_rules() -> None:
    promtool("check", "rules", RULES)


def test_the_rule_unit_tests_pass_promtool_test_rules() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    output = promtool("test", "rules", *tests)
    assert "FAILED" not in output


def test_the_agreed_alerts_exist() -> None:
    assert {rule["alert"] for rule in alerts()} >= EXPECTED_ALERTS


def test_every_alert_is_unit_tested_both_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_every_alert_has_a_severity_and_a_dutch_summary_and_description() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), rule["alert"]


def test_the_rules_use_only_catalogued_metrics() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        unknown = metric_names(rule["expr"]) - catalogued_metrics() - recorded
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses {unknown}"


def test_the_working_day_alert_uses_day_of_week() -> None:
    (rule,) = [rule for rule in alerts() if rule["alert"] == "NoSignalsForAWorkingDay"]
    assert "day_of_week()" in rule["expr"]
    assert "intake_signals_accepted_total" in rule["expr"]


# ------------------------------------------------------------------------------------------- Grafana


def test_the_committed_dashboards_equal_a_fresh_generation() -> None:
    gen = generator()
    committed = sorted(p.name for p in (GRAFANA / "dashboards").glob("*.json"))
    assert committed == sorted(dashboards())
    for name, board in dashboards().items():
        text = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert text == gen.render(board), f"{name} is stale: run python infra/grafana/generate.py"


def test_the_two_agreed_dashboards_exist_with_their_titles() -> None:
    titles = {name: board["title"] for name, board in dashboards().items()}
    assert titles == {
        "keten.json": "Keten — pipeline",
        "samenwerking.json": "Samenwerking — terugkoppeling",
    }


def test_dashboard_uids_are_unique() -> None:
    uids = [board["uid"] for board in dashboards().values()]
    assert all(uids) and len(uids) == len(set(uids))


def test_panel_ids_are_unique_within_each_dashboard() -> None:
    for name, board in dashboards().items():
        ids = [panel["id"] for panel in all_panels(board["panels"])]
        assert len(ids) == len(set(ids)), name


def test_panels_do_not_overlap_on_the_grid() -> None:
    for name, board in dashboards().items():
        cells: dict[tuple[int, int], int] = {}
        for panel in all_panels(board["panels"]):
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: panel {panel['id']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["id"]


def test_every_panel_queries_the_prometheus_datasource() -> None:
    for name, board in dashboards().items():
        for panel in all_panels(board["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "prometheus"


def test_all_panel_queries_lists_every_target_of_every_panel() -> None:
    expected = [
        (board["uid"], panel["id"], target["expr"])
        for board in dashboards().values()
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]
    assert generator().all_panel_queries() == expected
    assert len(expected) > 20


def test_every_panel_query_parses_as_promql(tmp_path: Path) -> None:
    exprs = [expr for _uid, _panel, expr in generator().all_panel_queries()]
    output = check_exprs_parse(exprs, tmp_path)
    assert f"SUCCESS: {len(exprs)} rules found" in output


def test_the_parse_check_rejects_a_broken_query(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="exited 1"):
        check_exprs_parse(["sum by (route (rate(feedback_closures_total[5m]))"], tmp_path)


def test_panel_queries_use_only_catalogued_metrics() -> None:
    for uid, panel_id, expr in generator().all_panel_queries():
        unknown = metric_names(expr) - catalogued_metrics()
        assert not unknown, f"{uid} panel {panel_id} uses {unknown}: {expr}"
        assert "$" not in expr, f"{uid} panel {panel_id} uses a Grafana variable: {expr}"


def test_the_metric_name_extraction_sees_names_but_not_functions_or_labels() -> None:
    expr = ('histogram_quantile(0.9, sum by (route, le) '
            '(rate(feedback_time_to_close_seconds_bucket{route="zat"}[1d])))'
            " / on () up offset 1h")
    assert metric_names(expr) == {"feedback_time_to_close_seconds_bucket", "up"}


def test_the_grafana_provisioning_matches_the_compose_mounts() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == "prometheus" and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "schakel.yml").read_text())
    (provider,) = providers["providers"]
    grafana_volumes = compose()["services"]["grafana"]["volumes"]
    assert f"./infra/grafana/dashboards:{provider['options']['path']}:ro" in grafana_volumes
    assert "./infra/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes


# ------------------------------------------------------------------------------ docker-compose, Docker


def test_docker_compose_yml_passes_docker_compose_config() -> None:
    run(tool("docker-compose", "docker-compose"), "-f", COMPOSE_FILE, "config", "--quiet")


def test_every_long_running_compose_service_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot jobs are waited on with service_completed_successfully
        assert "healthcheck" in service, name


def test_compose_dependencies_wait_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            condition = spec["condition"]
            assert condition in {"service_healthy", "service_completed_successfully"}, (name, dependency)
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)
            else:
                assert services[dependency]["restart"] == "no", (name, dependency)
    assert "sleep" not in COMPOSE_FILE.read_text(encoding="utf-8")


def test_the_schakel_services_run_from_the_one_image_with_the_agreed_settings() -> None:
    services = compose()["services"]
    for port, name in enumerate(SERVICES, start=8001):
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["command"] == ["python", "-m", f"services.{name}"]
        env = service["environment"]
        assert env["SCHAKEL_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["SCHAKEL_SMTP_HOST"] == "mailcatcher"
        assert env["SCHAKEL_SMTP_PORT"] == "1025"
        assert env["SCHAKEL_HTTP_HOST"] == "0.0.0.0"  # noqa: S104 - checks the compose file, binds nothing
        assert env["SCHAKEL_HTTP_PORT"] == str(port)
        assert COMPOSE_TARGETS[name] == f"{name}:{port}"
        assert f"{port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["command"] == ["python", "-m", "schakel", "topics", "create"]
    assert services["notify"]["depends_on"]["mailcatcher"]["condition"] == "service_healthy"
    assert services["werkbak"]["depends_on"]["idp"]["condition"] == "service_healthy"
    assert services["werkbak"]["environment"]["SCHAKEL_OIDC_ISSUER"] == "http://idp.localhost:18080"


def test_compose_uses_official_kafka_4_in_kraft_mode_and_the_compose_prometheus_config() -> None:
    services = compose()["services"]
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", services["kafka"]["image"])
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--config.file=/etc/prometheus/prometheus.compose.yml" in services["prometheus"]["command"]
    assert "./infra/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_the_dockerfile_installs_the_project_on_python_311_slim() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert "pip install --no-deps --constraint requirements.lock ." in text
    assert re.search(r'^CMD \["python", "-m", "services\.\w+"\]$', text, re.MULTILINE)
    copied = set(re.findall(r"^COPY (\S+)/ ", text, re.MULTILINE))
    ignored = set((REPO / ".dockerignore").read_text(encoding="utf-8").split())
    assert copied.isdisjoint(ignored)
    assert all((REPO / name).is_dir() for name in copied), copied


def test_the_generated_dashboard_json_is_plain_json() -> None:
    for path in (GRAFANA / "dashboards").glob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
