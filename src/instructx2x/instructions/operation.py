"""The editing operation: what the difference parser, the grammar and the editor exchange."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

OPS = ("add", "remove", "change")


@dataclass(frozen=True)
class Operation:
    """One edit. ``op`` in add/remove/change; ``finding`` an official disease name (vocabulary.DISEASES);
    ``location`` normalised (``left``, ``right lung base``, ``bilateral``...) or None; ``severity`` level
    words or None (add/remove); ``from_level``/``to_level`` for change. ``sources`` (not part of
    equality) says where each attribute came from: ``answer``, ``keyinfo``, ``question``, ``report``,
    ``text``."""

    op: str
    finding: str
    location: str | None = None
    severity: str | None = None
    from_level: str | None = None
    to_level: str | None = None
    sources: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"operation must be one of {OPS}, got {self.op!r}")

    def to_dict(self, with_sources: bool = True) -> dict:
        d = {"op": self.op, "finding": self.finding, "location": self.location, "severity": self.severity,
             "from_level": self.from_level, "to_level": self.to_level}
        if with_sources:
            d["sources"] = {k: self.sources[k] for k in sorted(self.sources)}
        return d

    def to_cli_dict(self) -> dict:
        """The CLI's JSON shape: ``{"op","finding","location","severity","from","to"}``."""
        return {"op": self.op, "finding": self.finding, "location": self.location, "severity": self.severity,
                "from": self.from_level, "to": self.to_level}

    @classmethod
    def from_dict(cls, d: dict) -> "Operation":
        return cls(op=d["op"], finding=d["finding"], location=d.get("location"), severity=d.get("severity"),
                   from_level=d.get("from_level", d.get("from")), to_level=d.get("to_level", d.get("to")),
                   sources=dict(d.get("sources") or {}))


def operations_json(ops) -> str:
    """Canonical JSON text of a list of operations (sorted keys, no spaces): the parquet column."""
    return json.dumps([o.to_dict() for o in ops], sort_keys=True, separators=(",", ":"))


def operations_from_json(text: str) -> list[Operation]:
    return [Operation.from_dict(d) for d in json.loads(text)]
