"""Location and severity of each operation, with the source that gave each attribute.

Which study describes an operation: ``add`` -> the current study, ``remove`` -> the past study,
``change`` -> levels from the answer itself, location from the current study.

Sources, tried in order per attribute (the first that has a value wins, its name is recorded):

1. ``keyinfo``: ``all_diseases.json`` (``tables/diseases.parquet``): ``location`` words (else the
   ``post_location`` phrase) and ``level`` words of the finding in that study;
2. ``question``: the study's own ``location``/``level`` questions in ``tables/vqa.parquet``
   (``where is the <d>?`` -> ``left apical area``; ``is the <d> located on the left side or right side?``;
   ``what level is the <d>?``);
3. ``report``: rule-based extraction from the report text (``ReportExtractor``: spaCy's tokenizer,
   sentencizer and ``PhraseMatcher`` over ``spacy.blank("en")``, no model download): each location and
   level is attached to the finding it modifies within its clause, negated mentions are skipped, and
   the character span of each attribute is recorded (``sources.location_span``/``severity_span``,
   ``start:end`` in the report text).

Locations are normalised with ``vocabulary.normalise_location``; levels are level words joined by a space.
"""

from __future__ import annotations

import re

import pandas as pd

from .operation import Operation
from .report_scope import FINDING_ALIASES, ReportExtractor
from .vocabulary import (
    is_level,
    location_side_zone,
    normalise_level,
    normalise_location,
)

SOURCES = ("keyinfo", "question", "report")
_NULLS = {None, "", "None", "nan", "null"}
# findings treated as one by the Diff-VQA generator (pneumonia vs infection)


def _as_list(v):
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, str):
        return None if v in _NULLS else [v]
    out = [str(x) for x in list(v) if x is not None]
    return out or None


def keyinfo_lookup(diseases: pd.DataFrame) -> dict:
    """{(study_id, finding): (location, severity)} from the key-information table."""
    out = {}
    n = len(diseases)
    locs = diseases["location"].to_numpy() if "location" in diseases.columns else [None] * n
    levs = diseases["level"].to_numpy() if "level" in diseases.columns else [None] * n
    posts = diseases["post_location"].to_numpy() if "post_location" in diseases.columns else [None] * n
    for study, entity, lw, lv, pl in zip(diseases["study_id"].to_numpy(), diseases["entity"].to_numpy(),
                                         locs, levs, posts):
        lw = _as_list(lw)
        loc = normalise_location(" ".join(lw)) if lw else None
        if loc is None and isinstance(pl, str) and pl not in _NULLS:
            loc = normalise_location(pl)
        lv = _as_list(lv)
        sev = normalise_level(" ".join(lv)) if lv else None
        out.setdefault((int(study), str(entity)), (loc, sev))
    return out


_Q_LOC = [re.compile(r"^where in the image is the (?P<d>.+) located\?$"), re.compile(r"^where is the (?P<d>.+)\?$")]
_Q_SIDE = re.compile(r"^is the (?P<d>.+) located on the left side or right side\?$")
_Q_LEVEL = re.compile(r"^what level is the (?P<d>.+)\?$")


def _answer_location(ans: str) -> str | None:
    first = ans.strip().split(" and ")[0] if re.search(r" area and ", ans) else ans.strip()
    return normalise_location(first)


def question_lookup(vqa: pd.DataFrame) -> dict:
    """{(study_id, finding): (location, severity)} from the location/level questions of each study."""
    sub = vqa[vqa["question_type"].isin(["location", "level"])]
    out: dict = {}
    for study, q, a in zip(sub["study_id"].to_numpy(), sub["question"].to_numpy(), sub["answer"].to_numpy()):
        key_loc = key_lev = None
        m = _Q_LEVEL.match(q)
        if m and is_level(a):
            key_lev = (int(study), m.group("d"))
            loc, lev = out.get(key_lev, (None, None))
            out[key_lev] = (loc, lev or normalise_level(a))
            continue
        m = _Q_SIDE.match(q)
        if m:
            key_loc = (int(study), m.group("d"))
            val = {"left side": "left", "right side": "right"}.get(a.strip())
        else:
            for rx in _Q_LOC:
                m = rx.match(q)
                if m:
                    key_loc = (int(study), m.group("d"))
                    val = _answer_location(a)
                    break
        if key_loc is not None and val:
            loc, lev = out.get(key_loc, (None, None))
            # an open location answer beats the left/right one
            if loc is None or (loc in ("left", "right") and val not in ("left", "right")):
                out[key_loc] = (val, lev)
    return out


def _lookup(table: dict, study, finding):
    v = table.get((study, finding))
    if v is None and finding in FINDING_ALIASES:
        v = table.get((study, FINDING_ALIASES[finding]))
    return v or (None, None)


def study_of(op: Operation, current_study: int, past_study: int) -> int:
    return past_study if op.op == "remove" else current_study


def attach_attributes(ops, current_study: int, past_study: int, keyinfo: dict, questions: dict,
                      report: ReportExtractor | None = None) -> list[Operation]:
    """Operations with location/severity filled from keyinfo, then questions, then the report."""
    out = []
    for op in ops:
        study = study_of(op, current_study, past_study)
        src = dict(op.sources)
        loc, sev = op.location, op.severity
        need_sev = op.op != "change"
        for name, table in (("keyinfo", keyinfo), ("question", questions)):
            l2, s2 = _lookup(table, study, op.finding)
            if loc is None and l2:
                loc, src["location"] = l2, name
            if need_sev and sev is None and s2:
                sev, src["severity"] = s2, name
        # a bare side (e.g. from `... left side or right side?`) may be refined by the report
        side_only = loc in ("left", "right") and src.get("location") == "question"
        if report is not None and (loc is None or side_only or (need_sev and sev is None)):
            d = report.detail(study, op.finding)
            if d["location"] is None and d["severity"] is None and op.finding in FINDING_ALIASES:
                d = report.detail(study, FINDING_ALIASES[op.finding])
            l2, s2 = d["location"], d["severity"]
            if loc is None and l2:
                loc, src["location"], src["location_span"] = l2, "report", d["location_span"]
            elif side_only and l2 and l2 != loc and location_side_zone(l2)[0] == loc:
                loc, src["location"], src["location_span"] = l2, "question+report", d["location_span"]
            if need_sev and sev is None and s2:
                sev, src["severity"], src["severity_span"] = s2, "report", d["severity_span"]
        src["study"] = "past" if study == past_study and op.op == "remove" else "current"
        out.append(Operation(op.op, op.finding, loc, sev, op.from_level, op.to_level, src, direction=op.direction))
    return out


def level_hints(keyinfo: dict, finding_names, current_study: int, past_study: int) -> dict:
    """{finding: (past level, current level)} to resolve ambiguous level-change sentences."""
    hints = {}
    for d in finding_names:
        a = _lookup(keyinfo, past_study, d)[1]
        b = _lookup(keyinfo, current_study, d)[1]
        if a and b:
            hints[d] = (a, b)
    return hints
