"""`schakel partners add-token|signing-key`: new partner tokens (only the hash is written) and inbound signing keys."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import yaml

from shared.municipality import ConfigError, hash_token, load_municipality
from shared.settings import Settings


class PartnerFileError(ValueError):
    """The file has no such partner, or its token list cannot be edited as text."""


def new_token() -> str:
    """A random bearer token (256 bits)."""
    return "skt_" + secrets.token_urlsafe(32)


def _partner_node(root: yaml.Node, partner_id: str) -> yaml.MappingNode:
    if not isinstance(root, yaml.MappingNode):
        raise PartnerFileError("the file is not a mapping")
    for key, value in root.value:
        if key.value == "partners" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode) and any(
                    k.value == "id" and getattr(v, "value", None) == partner_id for k, v in item.value
                ):
                    return item
    raise PartnerFileError(f"no partner with id {partner_id!r}")


def add_token_hash(text: str, *, partner_id: str, token_hash: str) -> str:
    """The file text with one more hash in the partner's token_hashes; everything else stays as written."""
    partner = _partner_node(yaml.compose(text, Loader=yaml.SafeLoader), partner_id)
    lines = text.splitlines(keepends=True)
    found = [(k, v) for k, v in partner.value if k.value == "token_hashes"]
    if not found:
        id_key, id_value = next((k, v) for k, v in partner.value if k.value == "id")
        indent = " " * id_key.start_mark.column
        line = id_value.end_mark.line
        newline = "\n" if lines[line].endswith("\n") else ""
        lines[line] = (
            lines[line].rstrip("\n") + "\n" + f"{indent}token_hashes: [{token_hash}]" + ("\n" if newline else "")
        )
        return "".join(lines)
    _key, value = found[0]
    if not isinstance(value, yaml.SequenceNode):
        raise PartnerFileError("token_hashes is not a list")
    if value.flow_style:
        end = value.end_mark.index  # just after the closing bracket
        close = text.rindex("]", 0, end)
        inner = text[value.start_mark.index + 1:close]
        addition = token_hash if not inner.strip() else f", {token_hash}"
        return text[:close].rstrip() + addition + text[close:]
    last = value.value[-1]
    dash_line = lines[last.start_mark.line]
    prefix = dash_line[: last.start_mark.column]
    insert_at = last.end_mark.line + (1 if last.end_mark.column > 0 else 0)
    if not lines[insert_at - 1].endswith("\n"):
        lines[insert_at - 1] += "\n"
    lines.insert(insert_at, f"{prefix}{token_hash}\n")
    return "".join(lines)


def add_token(path: Path, partner_id: str) -> str:
    """Write the hash of a new token into the file (validated, atomically) and return the token."""
    text = path.read_text(encoding="utf-8")
    token = new_token()
    updated = add_token_hash(text, partner_id=partner_id, token_hash=hash_token(token))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    try:
        municipality = load_municipality(tmp)
        if municipality.partner_by_token(token) is None or municipality.partners[partner_id] is None:
            raise PartnerFileError("the new hash did not land in the partner's token_hashes")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return token


def _add_token(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else Settings().config
    try:
        token = add_token(path, args.partner)
    except (PartnerFileError, ConfigError, OSError, yaml.YAMLError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    print(token)
    print(f"Token for {args.partner} added to {path}; only its hash is stored. It is shown this once.",
          file=sys.stderr)
    return 0


def _signing_key(args: argparse.Namespace) -> int:
    from services.intake.signing import partner_signing_key

    settings = Settings()
    path = Path(args.config) if args.config else settings.config
    if args.partner not in load_municipality(path).partners:
        print(f"{path}: no partner with id {args.partner!r}", file=sys.stderr)
        return 1
    master_secret = settings.inbound_signing_secret.get_secret_value()
    print(partner_signing_key(master_secret=master_secret, partner_id=args.partner))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `schakel partners ...`."""
    partners = sub.add_parser("partners", help="partner tokens and signing keys")
    actions = partners.add_subparsers(dest="partners_action", required=True)
    add = actions.add_parser("add-token", help="print a new token once and store only its hash")
    add.add_argument("partner")
    add.add_argument("--config", help="the municipality file (default: SCHAKEL_CONFIG)")
    add.set_defaults(func=_add_token)
    key = actions.add_parser("signing-key", help="the HMAC key a Kafka-connected partner signs records with")
    key.add_argument("partner")
    key.add_argument("--config", help="the municipality file (default: SCHAKEL_CONFIG)")
    key.set_defaults(func=_signing_key)
