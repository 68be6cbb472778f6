"""The registration gate: which registered pairs are kept, and the reason for each rejection.

A policy over the registration results (rule ``registration_gate``), kept apart from the
registration itself so that changing a threshold or a check never touches how pairs are
registered. Checks, first failing one wins: the paper's MI gate, the mirror check (a left-right
mirrored current registering better) and the same-patient check (gross correlation and local
structure correlation; see docs/registration.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateSettings:
    mi_threshold: float = -0.88
    mirror_margin: float = 0.05
    ncc_min: float = 0.25
    structure_ncc_min: float = 0.91

    @classmethod
    def from_config(cls, section: dict) -> "GateSettings":
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


def gate_reason(row: dict, g: GateSettings) -> str:
    """'' if the pair is kept, otherwise the reason it is rejected (first failing check)."""
    if row.get("status") != "ok":
        return row.get("reason") or "registration failed"
    if not (row["mi"] <= g.mi_threshold):
        return "mi gate"
    mirror_mi = row.get("mirror_mi")
    if mirror_mi is not None and not math.isnan(mirror_mi) and mirror_mi < row["mi"] - g.mirror_margin:
        return "mirror suspected"
    if not (row["ncc"] >= g.ncc_min):
        return "wrong patient suspected"
    structure = row.get("structure_ncc")
    if structure is not None and not (structure >= g.structure_ncc_min):  # NaN (not measured) is rejected too
        return "wrong patient suspected"
    return ""
