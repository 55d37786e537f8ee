"""Build Schakel's Grafana dashboards with grafana-foundation-sdk and write them to dashboards/.

Run `python infra/grafana/generate.py` to regenerate, `--check` to verify the committed files.
Every query uses only metrics from docs/metrics.md (plus `up`) and fixed range windows,
so it can be evaluated directly against Prometheus (see `all_panel_queries`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as dashboard_model

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = dashboard_model.DataSourceRef(type_val="prometheus", uid="prometheus")
SERVICES: tuple[str, ...] = ("intake", "routing", "feedback", "notify")

Panel = dict[str, Any]
Target = tuple[str, str]  # (expr, legendFormat)
PanelBuilder = sdk_timeseries.Panel | sdk_stat.Panel | sdk_bargauge.Panel


class Layout:
    """A dashboard under construction: rows and panels in reading order, each panel with the next id.

    The SDK's dashboard builder places them on the grid left to right, top to bottom.
    """

    def __init__(self) -> None:
        """An empty dashboard; panel ids start at 1."""
        self.next_id = 1
        self.items: list[sdk_dashboard.Row | PanelBuilder] = []

    def row(self, title: str) -> None:
        """Start a new (expanded) row with a title."""
        self.items.append(sdk_dashboard.Row(title).id(self._id()).collapsed(False))

    def add(self, panel: PanelBuilder, *, width: int = 12, height: int = 8) -> None:
        """Add a panel of the given size."""
        self.items.append(panel.id(self._id()).span(width).height(height))

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _targets(panel: PanelBuilder, targets: list[Target]) -> None:
    """Prometheus range queries with refIds A, B, ..."""
    for i, (expr, legend) in enumerate(targets):
        panel.with_target(sdk_prometheus.Dataquery().datasource(DATASOURCE).ref_id(chr(ord("A") + i))
                          .expr(expr).legend_format(legend).range())


def _thresholds(steps: list[tuple[float | None, str]]) -> sdk_dashboard.ThresholdsConfig:
    return sdk_dashboard.ThresholdsConfig().mode(dashboard_model.ThresholdsMode.ABSOLUTE).steps(
        [dashboard_model.Threshold(value=value, color=color) for value, color in steps])


def _last_value() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def timeseries(
    title: str, targets: list[Target], *, unit: str = "short", description: str = "", stack: bool = False
) -> sdk_timeseries.Panel:
    """A time series panel."""
    panel = (
        sdk_timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).min(0)
        .draw_style(common_model.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
        .show_points(common_model.VisibilityMode.NEVER)
        .stacking(sdk_common.StackingConfig().mode(
            common_model.StackingMode.NORMAL if stack else common_model.StackingMode.NONE).group("A"))
        .legend(sdk_common.VizLegendOptions().display_mode(common_model.LegendDisplayMode.LIST)
                .placement(common_model.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(sdk_common.VizTooltipOptions().mode(common_model.TooltipDisplayMode.MULTI)
                 .sort(common_model.SortOrder.DESCENDING))
    )
    _targets(panel, targets)
    return panel


def stat(
    title: str,
    targets: list[Target],
    *,
    unit: str = "short",
    description: str = "",
    thresholds: list[tuple[float | None, str]] | None = None,
    mappings: list[dashboard_model.ValueMap] | None = None,
) -> sdk_stat.Panel:
    """A single-value panel showing the last value of each series."""
    panel = (
        sdk_stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
        .thresholds(_thresholds(thresholds or [(None, "green")])).mappings(list(mappings or []))
        .reduce_options(_last_value()).color_mode(common_model.BigValueColorMode.BACKGROUND)
        .graph_mode(common_model.BigValueGraphMode.NONE).text_mode(common_model.BigValueTextMode.AUTO)
        .justify_mode(common_model.BigValueJustifyMode.AUTO).orientation(common_model.VizOrientation.AUTO)
    )
    _targets(panel, targets)
    return panel


def bargauge(title: str, targets: list[Target], *, unit: str = "short", description: str = "") -> sdk_bargauge.Panel:
    """A horizontal bar gauge, one bar per series."""
    panel = (
        sdk_bargauge.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit).min(0)
        .thresholds(_thresholds([(None, "blue")])).reduce_options(_last_value())
        .orientation(common_model.VizOrientation.HORIZONTAL)
        .display_mode(common_model.BarGaugeDisplayMode.GRADIENT).show_unfilled(True)
    )
    _targets(panel, targets)
    return panel


def value_text(texts: dict[str, str]) -> dashboard_model.ValueMap:
    """A value mapping that shows text instead of the given values."""
    return dashboard_model.ValueMap(options={value: dashboard_model.ValueMappingResult(text=text)
                                             for value, text in texts.items()})


def dashboard(*, uid: str, title: str, description: str, tags: list[str], layout: Layout) -> dict[str, Any]:
    """Build the dashboard with the SDK and return it as the JSON document Grafana reads."""
    builder = (
        sdk_dashboard.Dashboard(title).uid(uid).description(description).tags(["schakel", *tags])
        .readonly().tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR).refresh("30s").version(1)
        .time("now-6h", "now").timezone("browser")
    )
    for item in layout.items:
        if isinstance(item, sdk_dashboard.Row):
            builder.with_row(item)
        else:
            builder.with_panel(item)
    document: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return document


def _quantile(q: float, metric: str, *, by: str = "", window: str = "5m") -> str:
    """histogram_quantile over a histogram's buckets, summed by le (and `by`)."""
    group = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{window}])))"


def keten() -> dict[str, Any]:
    """The operators' dashboard: throughput, latency, lag, dead letters, e-mail, health per hop."""
    lay = Layout()

    lay.row("Gezondheid")
    lay.add(
        stat(
            "Bereikbaar (up)",
            [(f'sum by (job) (up{{job=~"{"|".join(SERVICES)}"}})', "{{job}}")],
            description="1 = Prometheus kan de dienst scrapen.",
            thresholds=[(None, "red"), (1, "green")],
            mappings=[value_text({"0": "onbereikbaar", "1": "bereikbaar"})],
        ),
        width=12,
        height=4,
    )
    lay.add(
        stat(
            "Gereed (ready)",
            [(f"max({svc}_ready)", svc) for svc in SERVICES],
            description="1 = verbonden met Kafka en tabellen hersteld.",
            thresholds=[(None, "red"), (1, "green")],
            mappings=[value_text({"0": "niet gereed", "1": "gereed"})],
        ),
        width=12,
        height=4,
    )

    lay.row("Doorvoer per hop")
    lay.add(
        timeseries(
            "Gelezen records per seconde",
            [(f"sum by (topic) (rate({svc}_records_consumed_total[5m]))", f"{svc} ← {{{{topic}}}}")
             for svc in SERVICES],
            unit="ops",
        )
    )
    lay.add(
        timeseries(
            "Geschreven records per seconde",
            [(f"sum by (topic) (rate({svc}_records_produced_total[5m]))", f"{svc} → {{{{topic}}}}")
             for svc in SERVICES],
            unit="ops",
        )
    )
    lay.add(
        timeseries(
            "Signalen door intake per seconde",
            [
                ("sum by (channel) (rate(intake_signals_accepted_total[5m]))",
                 "geaccepteerd via {{channel}}"),
                ("sum by (reason) (rate(intake_signals_rejected_total[5m]))", "geweigerd: {{reason}}"),
                ("sum(rate(intake_idempotent_replays_total[5m]))", "herhaald verzoek (idempotent)"),
            ],
            unit="ops",
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "HTTP-verzoeken op intake per seconde",
            [("sum by (method, route) (rate(intake_request_duration_seconds_count[5m]))",
              "{{method}} {{route}}")],
            unit="reqps",
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Routing per seconde",
            [
                ("sum by (route) (rate(routing_signals_assigned_total[5m]))", "toegewezen: {{route}}"),
                ("sum by (route) (rate(routing_rejections_total[5m]))", "afgewezen: {{route}}"),
            ],
            unit="ops",
        ),
        width=8,
    )

    lay.row("Latentie per hop")
    lay.add(
        timeseries(
            "Verwerkingstijd per record (p95)",
            [(_quantile(0.95, f"{svc}_record_processing_duration_seconds"), svc) for svc in SERVICES],
            unit="s",
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Intake → toegewezen (routing)",
            [
                (_quantile(0.5, "routing_assignment_latency_seconds"), "p50"),
                (_quantile(0.95, "routing_assignment_latency_seconds"), "p95"),
            ],
            unit="s",
            description="Van geaccepteerd door intake tot toegewezen door routing.",
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Intake → e-mail verstuurd (notify)",
            [
                (_quantile(0.5, "notify_email_end_to_end_latency_seconds"), "p50"),
                (_quantile(0.95, "notify_email_end_to_end_latency_seconds"), "p95"),
            ],
            unit="s",
            description="Van geaccepteerd door intake tot e-mail aangenomen door de SMTP-server.",
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "HTTP-antwoordtijd intake (p95)",
            [(_quantile(0.95, "intake_request_duration_seconds", by="method, route"),
              "{{method}} {{route}}")],
            unit="s",
        )
    )
    lay.add(
        timeseries(
            "SMTP-verzendtijd en sent-markering (p50, p95)",
            [
                (_quantile(0.5, "notify_email_send_duration_seconds"), "verzenden p50"),
                (_quantile(0.95, "notify_email_send_duration_seconds"), "verzenden p95"),
                (_quantile(0.95, "notify_sent_mark_duration_seconds"), "markering op de broker p95"),
            ],
            unit="s",
            description="De volgende e-mail over dezelfde SMTP-verbinding wacht op de markering van de vorige "
                        "(ADR 0022): een hoge p95 daar beperkt de doorvoer per verbinding.",
        )
    )

    lay.row("Achterstand (consumer lag)")
    lay.add(
        timeseries(
            "Consumer lag per dienst en topic",
            [(f"sum by (topic) ({svc}_consumer_lag_records)", f"{svc} ← {{{{topic}}}}")
             for svc in SERVICES],
            description="Records die nog niet verwerkt zijn (eind-offset min verwerkte offset).",
        ),
        width=24,
    )

    lay.row("Dead letters en weigeringen")
    lay.add(
        timeseries(
            "Dead letters per uur",
            [(f"sum by (topic, reason) (increase({svc}_dead_letters_total[1h]))",
              f"{svc} {{{{topic}}}}: {{{{reason}}}}") for svc in SERVICES],
            description="Records die naar een dead-letter-topic zijn geschreven; topic = brontopic.",
        ),
        width=16,
    )
    lay.add(
        stat(
            "Dead letters (24 uur)",
            [(f"sum(increase({svc}_dead_letters_total[24h]))", svc) for svc in SERVICES],
            thresholds=[(None, "green"), (1, "red")],
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Geweigerde levenscyclus-wijzigingen en config-herladingen per uur",
            [
                ("sum by (change) (increase(feedback_lifecycle_refused_total[1h]))", "geweigerd: {{change}}"),
                ("sum by (outcome) (increase(routing_config_reloads_total[1h]))",
                 "config herladen: {{outcome}}"),
            ],
        ),
        width=24,
    )

    lay.row("E-mail")
    lay.add(
        timeseries(
            "E-mails per uitkomst per seconde",
            [("sum by (outcome) (rate(notify_emails_total[5m]))", "{{outcome}}")],
            unit="ops",
        ),
        width=8,
    )
    lay.add(
        stat(
            "Definitief mislukt (15 min)",
            [(
                'sum(rate(notify_emails_total{outcome="permanent_failure"}[15m]))'
                ' / sum(rate(notify_emails_total{outcome=~"sent|permanent_failure"}[15m]))',
                "aandeel",
            )],
            unit="percentunit",
            thresholds=[(None, "green"), (0.01, "red")],
            description="Aandeel definitief mislukte e-mails van alle afgeronde (verstuurd of mislukt).",
        ),
        width=4,
    )
    lay.add(
        stat(
            "Oudste onverstuurde e-mail",
            [("max(notify_oldest_unsent_email_age_seconds)", "leeftijd")],
            unit="s",
            thresholds=[(None, "green"), (300, "orange"), (3600, "red")],
        ),
        width=4,
    )
    lay.add(
        timeseries(
            "Verstuurde e-mails per sjabloon per uur",
            [('sum by (template) (increase(notify_emails_total{outcome="sent"}[1h]))', "{{template}}")],
            stack=True,
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Signalen per samenvattingsmail (p50, max)",
            [
                (_quantile(0.5, "notify_digest_size_signals", window="1h"), "p50"),
                (_quantile(1.0, "notify_digest_size_signals", window="1h"), "max (bovengrens bucket)"),
            ],
        ),
        width=24,
    )
    return dashboard(
        uid="schakel-keten",
        title="Keten — pipeline",
        description="Doorvoer, latentie, achterstand, dead letters en e-mail per dienst van Schakel.",
        tags=["keten", "operations"],
        layout=lay,
    )


ROUTE_WINDOW = "1d"
COMPLIANCE_WINDOW = "7d"
CLOCKS: tuple[tuple[str, str, str], ...] = (
    ("acknowledge", "feedback_time_to_acknowledge_seconds", "Ontvangst bevestigen"),
    ("feedback", "feedback_time_to_first_feedback_seconds", "Eerste terugkoppeling"),
    ("close", "feedback_time_to_close_seconds", "Afsluiten"),
)


def samenwerking() -> dict[str, Any]:
    """The partners' dashboard: where signals go, how fast they are handled, whether reporters hear back."""
    lay = Layout()

    lay.row("Signalen")
    lay.add(
        stat("Signalen (24 uur)", [("sum(increase(intake_signals_accepted_total[24h]))", "signalen")]),
        width=6,
        height=5,
    )
    lay.add(
        stat("Open signalen", [("sum(feedback_open_signals)", "open")]),
        width=6,
        height=5,
    )
    lay.add(
        stat("Samenloop (24 uur)", [("sum(increase(routing_signals_matched_total[24h]))", "matches")],
             description="Twee of meer partners signaleerden hetzelfde kind (of gezin)."),
        width=6,
        height=5,
    )
    lay.add(
        stat(
            "Melder kreeg terugkoppeling (7 dagen)",
            [(
                f'sum(increase(feedback_closures_total{{with_feedback="true"}}[{COMPLIANCE_WINDOW}]))'
                f" / sum(increase(feedback_closures_total[{COMPLIANCE_WINDOW}]))",
                "aandeel",
            )],
            unit="percentunit",
            thresholds=[(None, "red"), (1, "green")],
            description="Aandeel afgesloten signalen waarvan de melder terugkoppeling kreeg; doel 100%.",
        ),
        width=6,
        height=5,
    )
    lay.add(
        timeseries(
            "Signalen per soort partner per uur",
            [("sum by (partner_kind) (increase(intake_signals_accepted_total[1h]))", "{{partner_kind}}")],
            stack=True,
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Toegewezen per route per uur",
            [("sum by (route) (increase(routing_signals_assigned_total[1h]))", "{{route}}")],
            stack=True,
        ),
        width=8,
    )
    lay.add(
        bargauge(
            "Open signalen per urgentie",
            [("sum by (urgency) (feedback_open_signals)", "{{urgency}}")],
        ),
        width=8,
    )
    lay.add(
        bargauge(
            "Open signalen per route",
            [("sum by (route) (feedback_open_signals)", "{{route}}")],
        ),
        width=8,
    )
    lay.add(
        bargauge(
            "Toegewezen per regel (24 uur)",
            [("sum by (rule) (increase(routing_signals_assigned_total[24h]))", "{{rule}}")],
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Levenscyclus per uur",
            [("sum by (change) (increase(feedback_lifecycle_transitions_total[1h]))", "{{change}}")],
        ),
        width=8,
    )

    lay.row("Doorlooptijden per route")
    for _clock, metric, label in CLOCKS:
        lay.add(
            timeseries(
                f"{label}: mediaan en p90 per route (1 dag)",
                [
                    (_quantile(0.5, metric, by="route", window=ROUTE_WINDOW), "p50 {{route}}"),
                    (_quantile(0.9, metric, by="route", window=ROUTE_WINDOW), "p90 {{route}}"),
                ],
                unit="s",
            ),
            width=8,
        )

    lay.row("Termijnen (SLA)")
    lay.add(
        stat(
            "Binnen de termijn (7 dagen, benadering)",
            [(
                f'clamp_min(1 - sum(increase(feedback_sla_breaches_total{{clock="{clock}"}}'
                f"[{COMPLIANCE_WINDOW}]))"
                f" / sum(increase({metric}_count[{COMPLIANCE_WINDOW}])), 0)",
                label,
            ) for clock, metric, label in CLOCKS],
            unit="percentunit",
            thresholds=[(None, "red"), (0.9, "orange"), (0.98, "green")],
            description="1 − overschrijdingen / afgeronde stappen, per klok, over 7 dagen.",
        ),
        width=24,
        height=5,
    )
    lay.add(
        timeseries(
            "Overschrijdingen per route en klok per uur",
            [("sum by (route, clock) (increase(feedback_sla_breaches_total[1h]))", "{{route}} {{clock}}")],
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Waarschuwingen per route en klok per uur",
            [("sum by (route, clock) (increase(feedback_sla_warnings_total[1h]))", "{{route}} {{clock}}")],
        ),
        width=8,
    )
    lay.add(
        timeseries(
            "Escalaties per stap per uur",
            [("sum by (step) (increase(feedback_sla_escalations_total[1h]))", "{{step}}")],
        ),
        width=8,
    )

    lay.row("Samenloop en terugkoppeling aan de melder")
    lay.add(
        timeseries(
            "Samenloop per uur",
            [
                ("sum(increase(routing_signals_matched_total[1h]))", "matches"),
                ('sum(increase(notify_emails_total{template="match", outcome="sent"}[1h]))', "match-e-mails"),
            ],
        ),
        width=12,
    )
    lay.add(
        bargauge(
            "Melder kreeg terugkoppeling, per route (7 dagen)",
            [(
                f'sum by (route) (increase(feedback_closures_total{{with_feedback="true"}}'
                f"[{COMPLIANCE_WINDOW}]))"
                f" / sum by (route) (increase(feedback_closures_total[{COMPLIANCE_WINDOW}]))",
                "{{route}}",
            )],
            unit="percentunit",
        ),
        width=12,
    )
    return dashboard(
        uid="schakel-samenwerking",
        title="Samenwerking — terugkoppeling",
        description=(
            "Signalen per route, urgentie en partner; doorlooptijden, termijnen, samenloop en terugkoppeling."
        ),
        tags=["samenwerking", "terugkoppeling"],
        layout=lay,
    )


def build_dashboards() -> dict[str, dict[str, Any]]:
    """Return every dashboard by its file name."""
    return {"keten.json": keten(), "samenwerking.json": samenwerking()}


def render(board: dict[str, Any]) -> str:
    """Serialise a dashboard exactly as it is committed."""
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def _panels(panels: list[Panel]) -> Iterator[Panel]:
    """Yield panels, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def all_panel_queries() -> list[tuple[str, int, str]]:
    """Return (dashboard uid, panel id, PromQL expression) for every query on every dashboard."""
    return [
        (board["uid"], panel["id"], target["expr"])
        for board in build_dashboards().values()
        for panel in _panels(board["panels"])
        for target in panel.get("targets", [])
    ]


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check report whether the committed files are up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    parser.add_argument("--out", type=Path, default=DASHBOARD_DIR)
    args = parser.parse_args(argv)
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    for name, board in build_dashboards().items():
        path = args.out / name
        text = render(board)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        names = ", ".join(map(str, stale))
        print(f"out of date (run python infra/grafana/generate.py): {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
