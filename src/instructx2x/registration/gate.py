"""The registration gate: which registered pairs are kept, and the reason for each rejection.

A policy over the registration results (rule ``registration_gate``), kept apart from the
registration itself so that changing a threshold or a check never touches how pairs are
registered. Checks, first failing one wins: the paper's MI gate, the mirror check (a left-right
mirrored current registering better) and the same-patient check (gross correlation and local
structure correlation; see docs/registration.md).

The same-patient check has two parts: a gross-failure guard (``ncc < ncc_min``), which always
rejects, and the local-structure test (``structure_ncc < structure_ncc_min``), which either
rejects (``same_patient_action: reject``, the demo, where it was calibrated on planted foreign
images) or only flags (``flag``, the real-data default): on real radiographs no statistic we
measure separates genuine follow-ups from other patients' images well enough to reject on it
(benchmarks/RESULTS.md, "Registration on real radiographs": the structure_ncc of the few MI-kept
other-patient pairs lies inside the MI-kept follow-ups' range), so such a pair is kept and written
to the ledger as ``flagged: wrong patient suspected``. On real data the paper's MI gate is what
removes other patients' images (it keeps about 2% of them there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WRONG_PATIENT = "wrong patient suspected"
SAME_PATIENT_ACTIONS = ("reject", "flag")


@dataclass(frozen=True)
class GateSettings:
    mi_threshold: float = -0.88
    mirror_margin: float = 0.05
    ncc_min: float = 0.25
    structure_ncc_min: float = 0.91
    same_patient_action: str = "reject"

    def __post_init__(self):
        if self.same_patient_action not in SAME_PATIENT_ACTIONS:
            raise ValueError(f"registration.same_patient_action must be one of {SAME_PATIENT_ACTIONS}, got {self.same_patient_action!r}")

    @classmethod
    def from_config(cls, section: dict) -> "GateSettings":
        return cls(**{k: section[k] for k in cls.__dataclass_fields__ if k in section})


def structure_ok(row: dict, g: GateSettings) -> bool:
    """The local-structure part of the same-patient check (NaN, not measured, fails)."""
    structure = row.get("structure_ncc")
    return structure is None or bool(structure >= g.structure_ncc_min)


def gate_reason(row: dict, g: GateSettings) -> str:
    """'' if the pair is kept, otherwise the reason it is rejected (first failing check)."""
    if row.get("status") != "ok":
        return row.get("reason") or "registration failed"
    if not (row["mi"] <= g.mi_threshold):
        return "mi gate"
    mirror_mi = row.get("mirror_mi")
    if mirror_mi is not None and not math.isnan(mirror_mi) and mirror_mi < row["mi"] - g.mirror_margin:
        return "mirror suspected"
    if not (row["ncc"] >= g.ncc_min):  # gross failure guard: rejects whatever same_patient_action says
        return WRONG_PATIENT
    if g.same_patient_action == "reject" and not structure_ok(row, g):
        return WRONG_PATIENT
    return ""


def gate_flag(row: dict, g: GateSettings) -> str:
    """For a kept pair: '' or the warning it is kept with (``same_patient_action: flag``)."""
    if gate_reason(row, g) != "" or structure_ok(row, g):
        return ""
    return WRONG_PATIENT
