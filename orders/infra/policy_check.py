"""IAM policy evaluation, as far as our policies go: does a policy allow a call, and which grants went unused.

Identity policies only (no resource policies, boundaries or SCPs): a request is allowed when an
Allow statement matches it and no Deny statement does. A statement matches when one of its
actions matches (case-insensitive, `*` and `?` wildcards), one of its resources matches the
request's ARN (case-sensitive, the same wildcards), and every condition holds: each operator's
keys all present, each key equal to (or, for *Like, matching) one of its values. The operators
are those our policies use: StringEquals, StringLike, ArnEquals, ArnLike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Statement = dict[str, Any]
OPERATORS = {"StringEquals": False, "ArnEquals": False, "StringLike": True, "ArnLike": True}


@dataclass(frozen=True)
class Call:
    """One authorization a recorded call needed: action, resource, the request's condition keys."""

    role: str
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    call: str = ""


@lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(body + r"\Z", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """Whether `value` matches an IAM pattern (`*`: any run of characters, `?`: one)."""
    return _pattern(pattern, ignore_case).match(value) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Whether every condition of a statement holds in `context` (an unknown operator never holds)."""
    for operator, keys in condition.items():
        if operator not in OPERATORS:
            return False
        like = OPERATORS[operator]
        for key, wanted in keys.items():
            found = context.get(key)
            if found is None or not any(matches(str(w), found) if like else str(w) == found
                                        for w in _listed(wanted)):
                return False
    return True


def statement_matches(statement: Statement, call: Call) -> bool:
    return (any(matches(a, call.action, ignore_case=True) for a in _listed(statement["Action"]))
            and any(matches(r, call.resource) for r in _listed(statement["Resource"]))
            and conditions_hold(statement.get("Condition", {}), call.context))


def allowed_by(policy: Mapping[str, Any], call: Call) -> list[str]:
    """The Sids of the Allow statements that allow `call` (none when a Deny statement matches it)."""
    statements = _listed(policy.get("Statement", []))
    if any(s["Effect"] == "Deny" and statement_matches(s, call) for s in statements):
        return []
    return [str(s.get("Sid", "")) for s in statements
            if s["Effect"] == "Allow" and statement_matches(s, call)]


@dataclass(frozen=True)
class Unit:
    """One action on one resource pattern, of one statement of a role's policy."""

    role: str
    sid: str
    action: str
    resource: str


def units(role: str, policy: Mapping[str, Any]) -> list[Unit]:
    """Every (action, resource) a role's Allow statements grant."""
    return [Unit(role, str(s.get("Sid", "")), action, resource)
            for s in _listed(policy.get("Statement", [])) if s["Effect"] == "Allow"
            for action in _listed(s["Action"]) for resource in _listed(s["Resource"])]


def used(unit: Unit, statement: Statement, call: Call) -> bool:
    """Whether `call` is one that `unit` (of `statement`) allows."""
    return (call.role == unit.role and matches(unit.action, call.action, ignore_case=True)
            and matches(unit.resource, call.resource)
            and conditions_hold(statement.get("Condition", {}), call.context))


def unused(policies: Mapping[str, Mapping[str, Any]], calls: Iterable[Call]) -> list[Unit]:
    """The grants no call used, role by role, statement by statement."""
    calls = list(calls)
    found = []
    for role, policy in policies.items():
        by_sid = {str(s.get("Sid", "")): s for s in _listed(policy.get("Statement", []))}
        found += [u for u in units(role, policy) if not any(used(u, by_sid[u.sid], c) for c in calls)]
    return found


def refused(policies: Mapping[str, Mapping[str, Any]], calls: Iterable[Call]) -> list[Call]:
    """The calls their role's policy does not allow."""
    return [c for c in calls if not allowed_by(policies.get(c.role, {}), c)]
