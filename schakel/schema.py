"""`schakel schema`: JSON Schema of every event, an AsyncAPI 3.0 document of the topics, the OpenAPI documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from shared.events import EVENT_MODELS, STRUCTURED_CONTENT_TYPE, CloudEvent
from shared.topics import ALL_TOPICS

# Which events travel on which topic (topics not listed carry raw records, e.g. dead letters).
TOPIC_EVENTS: dict[str, tuple[str, ...]] = {
    "signals.inbound": ("nl.schakel.signal.received.v1",),
    "signals.received": ("nl.schakel.signal.received.v1",),
    "signals.assigned": ("nl.schakel.signal.assigned.v1",),
    "signals.matched": ("nl.schakel.signals.matched.v1",),
    "signals.lifecycle.requests": ("nl.schakel.lifecycle.requested.v1", "nl.schakel.sla.check.requested.v1",
                                   "nl.schakel.lifecycle.read_requested.v1",
                                   "nl.schakel.lifecycle.erasure_requested.v1"),
    "signals.lifecycle.replies": ("nl.schakel.lifecycle.replied.v1",),
    "signals.lifecycle": ("nl.schakel.signal.lifecycle.v1", "nl.schakel.signal.erased.v1"),
    "sla.warning": ("nl.schakel.sla.warning.v1",),
    "sla.breached": ("nl.schakel.sla.breached.v1",),
    "notifications.sent": ("nl.schakel.notification.sent.v1",),
    "audit.log": ("nl.schakel.audit.recorded.v1",),
    "privacy.erasures": ("nl.schakel.privacy.subject_erased.v1",),
    "notifications.digest": ("nl.schakel.notification.digest_item.v1", "nl.schakel.notification.digest_due.v1",
                             "nl.schakel.notification.digest_withdrawn.v1"),
}


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each event payload, by CloudEvents type."""
    return {event_type: model.model_json_schema() for event_type, model in sorted(EVENT_MODELS.items())}


def _message_name(event_type: str) -> str:
    return EVENT_MODELS[event_type].__name__


def asyncapi_document() -> dict[str, Any]:
    """An AsyncAPI 3.0 document: one channel per topic, one message per event type."""
    messages: dict[str, Any] = {}
    for event_type, model in sorted(EVENT_MODELS.items()):
        messages[model.__name__] = {
            "name": event_type,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip(),
            "contentType": "application/cloudevents+json",
            # The structured mode of the CloudEvents Kafka binding (ADR 0018).
            "headers": {"type": "object", "required": ["content-type"],
                        "properties": {"content-type": {"const": STRUCTURED_CONTENT_TYPE}}},
            "payload": {
                "allOf": [
                    {"$ref": "#/components/schemas/CloudEvent"},
                    {"type": "object", "properties": {"type": {"const": event_type},
                                                       "data": {"$ref": f"./events/{event_type}.json"}}},
                ]
            },
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        channel_id = topic.name.replace(".", "_")
        events = TOPIC_EVENTS.get(topic.name, ())
        channel: dict[str, Any] = {
            "address": topic.name,
            "description": f"{topic.description}. Key: {topic.key}. Cleanup: {topic.cleanup_policy}.",
            "messages": {_message_name(e): {"$ref": f"#/components/messages/{_message_name(e)}"} for e in events},
            "bindings": {"kafka": {"partitions": topic.partitions, "replicas": 1,
                                   "topicConfiguration": {"cleanup.policy": [topic.cleanup_policy],
                                                          "retention.ms": topic.retention_ms}}},
        }
        if not events:
            channel["messages"] = {"RawRecord": {"$ref": "#/components/messages/RawRecord"}}
        channels[channel_id] = channel
        operations[f"publish_{channel_id}"] = {"action": "send", "channel": {"$ref": f"#/channels/{channel_id}"}}
    messages["RawRecord"] = {
        "name": "raw-record",
        "summary": "The original record, unchanged, with provenance headers (dead-letter topics).",
        "headers": {"type": "object", "required": ["content-type"], "properties": {
            "content-type": {"type": "string", "description": "the original record's content type"},
            "schakel-original-topic": {"type": "string"}, "schakel-original-partition": {"type": "string"},
            "schakel-original-offset": {"type": "string"}, "schakel-error-code": {"type": "string"}}},
        "payload": {"type": "string", "format": "binary"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Schakel events", "version": "1.0.0",
                 "description": "Every Kafka topic of Schakel and the CloudEvents that travel on it."},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEvent": CloudEvent.model_json_schema()}},
    }


def openapi_documents() -> dict[str, dict[str, Any]]:
    """The OpenAPI document of every service with partner routes, by service."""
    from services.feedback.openapi import feedback_document
    from services.intake.openapi import intake_document

    return {"intake": intake_document(), "feedback": feedback_document()}


def render_all() -> dict[str, str]:
    """Relative path → file text, for writing or comparing."""
    files = {f"events/{event_type}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
             for event_type, schema in event_schemas().items()}
    for service, document in openapi_documents().items():
        files[f"openapi/{service}.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    files["asyncapi.yaml"] = "# Generated by `schakel schema`; do not edit.\n" + yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=110)
    return files


def write_schemas(out: Path) -> list[Path]:
    """Write every schema file under `out`, removing stale event schemas."""
    written = []
    files = render_all()
    for folder in ("events", "openapi"):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for stale in (out / folder).glob("*.json"):
            if f"{folder}/{stale.name}" not in files:
                stale.unlink()
    for relative, text in files.items():
        path = out / relative
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
