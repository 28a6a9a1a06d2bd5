"""What every resource kind of `orders infra up`, `check` and `down` shares.

One code path serves `up` and `check`: each resource is compared with its
declaration, and the differences are either applied (`up`) or reported as
drift (`check`). A second `up` therefore finds nothing to do and says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY

#: Attributes whose JSON value is compared as data, not as text.
JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy", "Policy"})


@dataclass
class Report:
    """What `up` changed or `check` found, one readable line per difference."""

    changes: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.changes.append(line)

    def note(self, line: str) -> None:
        """Something this endpoint cannot show: neither drift nor a change."""
        if line not in self.unverifiable:
            self.unverifiable.append(line)

    @property
    def clean(self) -> bool:
        return not self.changes


@dataclass
class Converger:
    """Compares each resource with its declaration; applies the difference when `apply`."""

    settings: Settings
    apply: bool
    report: Report = field(default_factory=Report)
    created: set[str] = field(default_factory=set)
    #: The environment key's ARN, once orders.infra.kms has found or created it (the first kind).
    key_arn: str | None = None

    @property
    def on_emulator(self) -> bool:
        return self.settings.has_endpoint

    @property
    def key(self) -> str:
        """What a queue, topic or table is told to encrypt with: the key's ARN (its alias until it exists)."""
        return self.key_arn or ENVIRONMENT_KEY.alias_name(self.settings)

    def drift(self, line: str) -> None:
        """A difference from the declaration: fixed by `up`, reported by `check`."""
        self.report.add(line + ("; fixed" if self.apply else ""))


def same_value(key: str, live: str | None, declared: str, as_json: bool = False) -> bool:
    if live is None:
        return False
    if as_json or key in JSON_ATTRIBUTES:
        try:
            return bool(json.loads(live) == json.loads(declared))
        except (TypeError, ValueError):
            return False
    return live == declared
