"""The editing operation: what the difference parser, the grammar and the editor exchange."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

OPS = ("add", "remove", "change")
DIRECTIONS = ("increase", "decrease")
# keys of ``Operation.sources`` (the parquet struct has exactly these fields)
SOURCE_KEYS = ("location", "severity", "from_level", "to_level", "study", "levels_split", "direction",
               "location_span", "severity_span")


@dataclass(frozen=True)
class Operation:
    """One edit. ``op`` in add/remove/change; ``finding`` an official disease name (vocabulary.DISEASES);
    ``location`` normalised (``left``, ``right lung base``, ``bilateral``...) or None; ``severity`` level
    words or None (add/remove); ``from_level``/``to_level`` for change. ``sources`` (not part of
    equality) says where each attribute came from: ``answer``, ``keyinfo``, ``question``, ``report``,
    ``text``. ``direction`` (``increase``/``decrease``) is set for a change typed without both levels
    (``Increase the effusion``: a one-step change of the current level; ``... to moderate``: to that level)."""

    op: str
    finding: str
    location: str | None = None
    severity: str | None = None
    from_level: str | None = None
    to_level: str | None = None
    sources: dict = field(default_factory=dict, compare=False, hash=False)
    direction: str | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"operation must be one of {OPS}, got {self.op!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS} or None, got {self.direction!r}")
        if self.op == "change" and self.to_level is None and self.direction is None:
            raise ValueError("a change needs a target level or a direction (increase/decrease)")
        if self.op != "change" and (self.from_level or self.to_level or self.direction):
            raise ValueError(f"levels and direction belong to a change, not to {self.op!r}")

    @property
    def one_step(self) -> bool:
        """A change typed with no level at all: one step up or down from the current level."""
        return self.op == "change" and self.from_level is None and self.to_level is None

    def to_dict(self, with_sources: bool = True) -> dict:
        d = {"op": self.op, "finding": self.finding, "location": self.location, "severity": self.severity,
             "from_level": self.from_level, "to_level": self.to_level, "direction": self.direction}
        if with_sources:
            d["sources"] = {k: self.sources[k] for k in sorted(self.sources)}
        return d

    def to_cli_dict(self) -> dict:
        """The CLI's JSON shape: ``{"op","finding","location","severity","from","to","direction"}``, plus
        ``"change"`` stating what a change without levels means."""
        d = {"op": self.op, "finding": self.finding, "location": self.location, "severity": self.severity,
             "from": self.from_level, "to": self.to_level, "direction": self.direction}
        if self.one_step:
            d["change"] = f"one-step {self.direction} of the current level (no levels given)"
        elif self.op == "change" and self.from_level is None:
            d["change"] = f"{self.direction or 'change'} from the current level to {self.to_level}"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Operation":
        src = d.get("sources") or {}
        return cls(op=d["op"], finding=d["finding"], location=d.get("location"), severity=d.get("severity"),
                   from_level=d.get("from_level", d.get("from")), to_level=d.get("to_level", d.get("to")),
                   sources={k: v for k, v in dict(src).items() if v is not None}, direction=d.get("direction"))


def operations_json(ops) -> str:
    """Canonical JSON text of a list of operations (sorted keys, no spaces): the parquet column."""
    return json.dumps([o.to_dict() for o in ops], sort_keys=True, separators=(",", ":"))


def operations_from_json(text) -> list[Operation]:
    """Operations of a JSON text, or of a parquet ``operations`` cell (a list of structs)."""
    if isinstance(text, str):
        return [Operation.from_dict(d) for d in json.loads(text)]
    return [Operation.from_dict(dict(d)) for d in list(text)]


def operations_text(value) -> str:
    """Canonical JSON text of an ``operations`` cell, whether JSON text or a list of structs."""
    return operations_json(operations_from_json(value))


def operations_records(ops) -> list[dict]:
    """Operations as parquet struct records: every key of ``OPERATION_ARROW_TYPE`` present."""
    out = []
    for o in ops:
        d = o.to_dict(with_sources=False)
        extra = set(o.sources) - set(SOURCE_KEYS)
        if extra:
            raise ValueError(f"unknown source key(s) {sorted(extra)}; known: {SOURCE_KEYS}")
        d["sources"] = {k: o.sources.get(k) for k in SOURCE_KEYS}
        out.append(d)
    return out


def load_operation_dicts(value) -> list[dict]:
    """An ``operations`` cell (list of structs or JSON text) as plain dicts, sources without empty keys."""
    return [o.to_dict() for o in operations_from_json(value)]
