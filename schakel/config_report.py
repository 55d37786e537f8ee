"""Text for operators: the effective configuration (`config explain`) and what changes (`config diff`)."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from schakel.effective_config import Effective, PolicyRow, RuleRow

URGENT_NOTE = ("ACUUT, U0 and HGKM also inform the coordinator whatever the rules say; "
               "HGKM also the school's aandachtsfunctionaris.")
POLICY_HEADER = ("route", "urgency", "acknowledge", "feedback", "close", "escalation", "policy", "terms from",
                 "escalation from")


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))).rstrip()
            for row in rows]


def _rule_text(rule: RuleRow) -> str:
    text = f"{rule.id}{f' (line {rule.line})' if rule.line else ''}: {rule.matches} -> {rule.target}"
    if rule.handoff:
        text += f"; after a rejection {', '.join(rule.handoff)}"
    if rule.inform:
        text += f"; informs {', '.join(rule.inform)}"
    return text


def explain(eff: Effective, *, source: str, warnings: Sequence[str] = ()) -> list[str]:
    """The effective configuration as lines of text."""
    out = [f"{source}: effective configuration of {eff.municipality}", "",
           "SLA policies (every route x urgency; the file beats the built-in policies, a specific urgency beats \"*\")"]
    rows = [POLICY_HEADER] + [(p.route, p.urgency, *p.terms, p.escalation, p.policy_id, p.terms_from,
                               p.escalation_from) for p in eff.policies]
    out += _table(rows)
    out += ["", "Bodies and who is mailed"]
    for body in eff.bodies:
        out.append(f"  {body.id} ({body.route}): {body.name}")
        out += [f"    {occasion}: {'; '.join(people) or 'nobody'}" for occasion, people in body.recipients]
    out += ["", f"Routing (first rule that holds and whose target exists wins; match window {eff.match_window_days} "
                "days)"]
    out += [f"  {i:2}. {_rule_text(rule)}" for i, rule in enumerate(eff.rules, start=1)]
    out += [f"      default {_rule_text(eff.default)}", f"  {URGENT_NOTE}", ""]
    out += [f"Warnings: {len(warnings)}" if warnings else "Warnings: none"] + [f"  {w}" for w in warnings]
    return out


def _policy_change(old: PolicyRow, new: PolicyRow) -> str | None:
    changes = [f"{clock} {a} -> {b}" for clock, a, b in zip(("acknowledge", "feedback", "close"), old.terms,
                                                             new.terms, strict=True) if a != b]
    if old.escalation != new.escalation:
        changes.append(f"escalation {old.escalation} -> {new.escalation}")
    if old.policy_id != new.policy_id:
        changes.append(f"policy {old.policy_id} -> {new.policy_id}")
    return "; ".join(changes) or None


def _policies(old: Effective, new: Effective) -> list[str]:
    by_key = {(p.route, p.urgency): p for p in old.policies}
    grouped: dict[tuple[str, str], list[str]] = {}
    for row in new.policies:
        before = by_key.get((row.route, row.urgency))
        change = _policy_change(before, row) if before else "new"
        if change:
            grouped.setdefault((row.route, change), []).append(row.urgency)
    return [f"~ sla {route} {', '.join(urgencies)}: {change}" for (route, change), urgencies in grouped.items()]


def _bodies(old: Effective, new: Effective) -> list[str]:
    before = {b.id: b for b in old.bodies}
    after = {b.id: b for b in new.bodies}
    out = [f"- body {b}" for b in before if b not in after] + [f"+ body {b}" for b in after if b not in before]
    for body_id in (b for b in after if b in before):
        was, now = dict(before[body_id].recipients), dict(after[body_id].recipients)
        for occasion in dict.fromkeys([*was, *now]):
            gone = [p for p in was.get(occasion, ()) if p not in now.get(occasion, ())]
            came = [p for p in now.get(occasion, ()) if p not in was.get(occasion, ())]
            out += [f"- recipient {body_id} {occasion}: {p}" for p in gone]
            out += [f"+ recipient {body_id} {occasion}: {p}" for p in came]
    return out


def _rule_fields(rule: RuleRow) -> dict[str, str]:
    return {"matches": rule.matches, "target": rule.target, "after a rejection": ", ".join(rule.handoff) or "-",
            "informs": ", ".join(rule.inform) or "-"}


def _rules(old: Effective, new: Effective) -> list[str]:
    before = {r.id: r for r in (*old.rules, old.default)}
    after_ids = [r.id for r in new.rules]
    out = [f"- rule {r.id}" for r in old.rules if r.id not in after_ids]
    kept_old = [r.id for r in old.rules if r.id in after_ids]
    kept_new = [i for i in after_ids if i in before and i in kept_old]
    in_place: set[str] = set()
    for block in SequenceMatcher(a=kept_old, b=kept_new, autojunk=False).get_matching_blocks():
        in_place |= set(kept_new[block.b:block.b + block.size])
    for position, rule in enumerate(new.rules, start=1):
        if rule.id not in kept_old:
            out.append(f"+ rule {rule.id} at position {position}: {_rule_text(rule)}")
            continue
        if rule.id not in in_place:
            out.append(f"~ rule {rule.id} moved to position {position}"
                       f"{f' (after {new.rules[position - 2].id})' if position > 1 else ' (first)'}")
        was, now = _rule_fields(before[rule.id]), _rule_fields(rule)
        out += [f"~ rule {rule.id}: {key} {was[key]} -> {now[key]}" for key in now if was[key] != now[key]]
    was_default, now_default = _rule_fields(old.default), _rule_fields(new.default)
    if old.default.id != new.default.id:
        out.append(f"~ default {old.default.id} -> {new.default.id}")
    out += [f"~ default: {key} {was_default[key]} -> {now_default[key]}"
            for key in now_default if was_default[key] != now_default[key]]
    if old.match_window_days != new.match_window_days:
        out.append(f"~ match window {old.match_window_days} -> {new.match_window_days} days")
    return out


def diff(old: Effective, new: Effective) -> list[str]:
    """What changes in effect from one file to the other: policies, recipients, rules (empty when nothing)."""
    return _policies(old, new) + _bodies(old, new) + _rules(old, new)
