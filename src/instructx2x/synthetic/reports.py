"""Free-text reports (MIMIC style) and the KeyInfo records of ``all_diseases.json``, both from the truth.

A report names every finding of its study with side, zone and level words the Diff-VQA extractor
would pick up, and negates a few absent ones (``No pneumothorax.``), which become ``no_entity``.
"""

from __future__ import annotations

import textwrap

from .truth import FINDINGS

_NEGATABLE = ("pneumothorax", "pleural effusion", "edema", "consolidation")


def location_words(finding: str, side: str | None, zone: str | None) -> list[str] | None:
    """Diff-VQA location words of a finding (all in the released vocabulary)."""
    if finding == "atelectasis" and side == "bilateral":
        return ["bibasilar"]
    words = []
    if side:
        words.append(side)
    if zone:
        words.append(zone)
    return words or None


def _phrase(f: dict) -> str:
    side, zone, level, name = f["side"], f["zone"], f["level"], f["finding"]
    if name == "cardiomegaly":
        return f"{level} cardiomegaly"
    if name == "edema":
        return f"{level} pulmonary edema"
    if name == "atelectasis":
        loc = "bibasilar" if side == "bilateral" else f"{side} basal"
        return f"{level} {loc} linear atelectasis"
    if name == "pneumothorax":
        return f"{level} {side} apical pneumothorax"
    if name == "pleural effusion":
        return f"{level} {side} pleural effusion" if side != "bilateral" else f"{level} bilateral pleural effusions"
    kind = "patchy lung opacity" if name == "lung opacity" else name
    return f"{level} {kind} in the {side} {zone} lung"


def negated(findings: list[dict], rng_value: float) -> list[str]:
    present = {f["finding"] for f in findings}
    neg = [n for n in _NEGATABLE if n not in present]
    return neg[: 1 + int(rng_value * len(neg))] if neg else []


def report_text(study: dict, findings: list[dict], neg: list[str], age: int, gender: str) -> str:
    """One report, MIMIC formatting: one leading space per line, ``___`` for PHI."""
    who = "woman" if gender == "F" else "man"
    views = "PA and lateral" if "LATERAL" in study["views"] else "Portable AP"
    sentences = []
    for f in findings:
        sentences.append(f"There is {_phrase(f)}.")
    if not any(f["finding"] == "cardiomegaly" for f in findings):
        sentences.append("The cardiomediastinal silhouette is normal.")
    for n in neg:
        sentences.append(f"No {n}.")
    if not findings:
        impression = ["No acute cardiopulmonary process."]
    else:
        impression = [_phrase(f)[0].upper() + _phrase(f)[1:] + "." for f in findings]
    lines = ["                                 FINAL REPORT",
             f" EXAMINATION:  {study['study_type']}", " ",
             f" INDICATION:  ___ year old {who} with shortness of breath  // eval", " ",
             f" TECHNIQUE:  Chest {views}", " ", " COMPARISON:  ___", " ", " FINDINGS: ", " "]
    lines += [" " + ln for ln in textwrap.wrap("  ".join(sentences), 77)]
    lines += [" ", " IMPRESSION: ", " "]
    lines += [" " + ln for ln in textwrap.wrap("  ".join(impression), 77)]
    return "\n".join(lines) + "\n"


def disease_record(subject_id: int, study_id: int, findings: list[dict], neg: list[str]) -> dict:
    """One record of ``all_diseases.json`` (data-contract §5.4): string ids, 9 keys per entity."""
    entity = {}
    for f in findings:
        post = None
        if f["finding"] in ("consolidation", "pneumonia", "lung opacity"):
            z = {"upper": "upper", "middle": "middle", "lower": "lower"}[f["zone"]]
            post = f"the {f['side']} {z} lung"
        spec = next(s for s in FINDINGS if s.name == f["finding"])
        entity[f["finding"]] = {
            "entity_name": f["finding"],
            "location": location_words(f["finding"], f["side"], f["zone"]),
            "type": [spec.type_word] if spec.type_word else None,
            "level": [f["level"]],
            "post_location": post,
            "location2": None,
            "type2": None,
            "level2": None,
            "post_location2": None,
        }
    return {"study_id": str(study_id), "subject_id": str(subject_id), "entity": entity, "no_entity": list(neg)}
