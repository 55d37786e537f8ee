"""The `schakel` command line: local stack, Kafka, topics, schema, config, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from schakel import config_cli
from shared.settings import Settings


def _kafka(args: argparse.Namespace) -> int:
    from schakel.kafka_broker import Broker
    from schakel.topics_admin import ensure_topics

    settings = Settings()
    broker = Broker(settings.state_dir / "kafka", port=int(settings.kafka_bootstrap.rsplit(":", 1)[1]))
    if args.action == "start":
        pid = broker.start()
        created = ensure_topics(broker.bootstrap)
        print(f"Kafka runs on {broker.bootstrap} (pid {pid}); data and logs in {broker.home}")
        if created:
            print(f"created topics: {', '.join(created)}")
    elif args.action == "stop":
        broker.stop()
        print("Kafka stopped")
    else:
        running = broker.pid()
        print(f"Kafka runs on {broker.bootstrap} (pid {running})" if running else "Kafka is not running")
        return 0 if running else 3
    return 0


def _topics(args: argparse.Namespace) -> int:
    from schakel.topics_admin import ensure_topics

    created = ensure_topics(Settings().kafka_bootstrap)
    print(f"created: {', '.join(created) or 'nothing (all present)'}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from schakel.schema import write_schemas

    for path in write_schemas(Path(args.out)):
        print(f"wrote {path}")
    return 0


def _stack(args: argparse.Namespace) -> int:
    from schakel import stack

    if args.command == "up":
        return stack.up(workers=args.workers)
    actions: dict[str, Callable[[], int]] = {"down": stack.down, "status": stack.status, "demo": stack.demo}
    return actions[args.command]()


def _traces(args: argparse.Namespace) -> int:
    import time

    from schakel.trace_sink import TraceSink

    sink = TraceSink(port=args.port, path=Path(args.out)).start()
    print(f"OTLP/HTTP trace receiver on {sink.url}: set SCHAKEL_OTLP_ENDPOINT={sink.url} for the services; "
          f"spans also go to {args.out} (one JSON line each). Ctrl-C stops.")
    shown = 0
    try:
        while True:
            time.sleep(0.5)
            spans = sink.snapshot()
            for span in spans[shown:]:
                print(f"{span.trace_id} {span.service:9s} {span.name}")
            shown = len(spans)
    except KeyboardInterrupt:
        sink.stop()
    return 0


def _mail(args: argparse.Namespace) -> int:
    from schakel.mail_preview import preview

    print(preview(args.kind))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """All subcommands."""
    parser = argparse.ArgumentParser(prog="schakel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    kafka = sub.add_parser("kafka", help="the local single-node Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.set_defaults(func=_kafka)
    topics = sub.add_parser("topics", help="create every registered topic (idempotent)")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=_topics)
    config_cli.add_parser(sub)
    schema = sub.add_parser("schema", help="write event JSON Schemas and the AsyncAPI document")
    schema.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "schema"))
    schema.set_defaults(func=_schema)
    for name, text in (("up", "start the local stack"), ("down", "stop the local stack"),
                       ("status", "show the local stack"), ("demo", "send the example signals")):
        command = sub.add_parser(name, help=text)
        command.set_defaults(func=_stack)
        if name == "up":
            command.add_argument("--workers", default=None, metavar="N|SERVICE=N,...",
                                 help="workers per stream service (routing, feedback, notify), e.g. 2 or "
                                      "routing=2,notify=3; at most 4, the topics' partitions")
    traces = sub.add_parser("traces", help="run a local OTLP/HTTP trace receiver and print the spans it gets")
    traces.add_argument("--port", type=int, default=4318)
    traces.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / ".state" / "traces.jsonl"))
    traces.set_defaults(func=_traces)
    mail = sub.add_parser("mail", help="e-mail templates")
    mail_sub = mail.add_subparsers(dest="mail_action", required=True)
    prev = mail_sub.add_parser("preview", help="render a template with sample data")
    prev.add_argument("kind", choices=["receipt", "assigned", "feedback", "closed", "warning", "breach",
                                       "escalation", "match", "digest"])
    prev.set_defaults(func=_mail)
    _add_optional("schakel.routes_cli", sub)
    _add_optional("schakel.partners_cli", sub)
    _add_optional("schakel.audit_cli", sub)
    _add_optional("schakel.privacy_cli", sub)
    _add_optional("schakel.repair_cli", sub)
    return parser


def _add_optional(module: str, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Subcommands that live in their own module: `add_parser(sub)` registers them."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return
    mod.add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit code says whether it worked."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
