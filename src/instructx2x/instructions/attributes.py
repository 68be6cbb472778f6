"""Location and severity of each operation, with the source that gave each attribute.

Which study describes an operation: ``add`` -> the current study, ``remove`` -> the past study,
``change`` -> levels from the answer itself, location from the current study.

Sources, tried in order per attribute (the first that has a value wins, its name is recorded):

1. ``keyinfo``: ``all_diseases.json`` (``tables/diseases.parquet``): ``location`` words (else the
   ``post_location`` phrase) and ``level`` words of the finding in that study;
2. ``question``: the study's own ``location``/``level`` questions in ``tables/vqa.parquet``
   (``where is the <d>?`` -> ``left apical area``; ``is the <d> located on the left side or right side?``;
   ``what level is the <d>?``);
3. ``report``: rule-based extraction from the report text with a ``spacy.blank("en")`` pipeline
   (regex sentence split, then an ``EntityRuler`` with FINDING/LOCATION/LEVEL patterns built from the
   vocabularies; no model download): the location and level words in the first non-negated sentence that names
   the finding.

Locations are normalised with ``vocabulary.normalise_location``; levels are level words joined by a space.
"""

from __future__ import annotations

import re
import pandas as pd

from .operation import Operation
from .vocabulary import DISEASE_SYNONYMS, EXTRA_LEVEL_WORDS, LEVELS, is_level, normalise_level, normalise_location

SOURCES = ("keyinfo", "question", "report")
_NULLS = {None, "", "None", "nan", "null"}
# findings treated as one by the Diff-VQA generator (pneumonia vs infection)
_ALIASES = {"infection": "pneumonia", "pneumonia": "infection"}


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


_NEGATION = re.compile(r"\b(no|without|clear of|r/o|rule out|less likely|no longer|resolved|disappeared)\b")


_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+")


class ReportExtractor:
    """spaCy rule-based extractor: (location, severity) of a finding in a report text.

    Reports are cut into sentences with a regex; only non-negated sentences that contain a synonym of
    a finding asked for reach spaCy (an ``EntityRuler`` over ``spacy.blank("en")``), each distinct
    sentence once: the pipeline is the expensive part, most report text names no finding asked for.
    """

    def __init__(self):
        import spacy

        nlp = spacy.blank("en")
        ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
        patterns = []
        for official, syns in DISEASE_SYNONYMS.items():
            for s in set(syns) | {official}:
                patterns.append({"label": "FINDING", "pattern": s, "id": official})
        for lev in LEVELS + EXTRA_LEVEL_WORDS:
            patterns.append({"label": "LEVEL", "pattern": lev})
        for loc in ("mid to lower", "left", "right", "retrocardiac", "bibasilar", "bilateral", "basilar",
                    "apicolateral", "basal", "left-sided", "right-sided", "base", "bases", "apical", "upper",
                    "lower", "middle", "mid", "lobe", "lung", "lungs", "apex", "apices"):
            patterns.append({"label": "LOCATION", "pattern": loc})
        ruler.add_patterns(patterns)
        self.nlp = nlp
        self._synonym_re = {
            official: re.compile(r"\b(?:" + "|".join(re.escape(x) for x in sorted(set(syns) | {official},
                                                                               key=len, reverse=True)) + r")")
            for official, syns in DISEASE_SYNONYMS.items()}
        self._cache: dict = {}

    def extract_all(self, study_text: dict, wanted: dict | None = None) -> None:
        """Parse {study_id: text}; ``wanted`` {study_id: findings} limits the work to those findings."""
        per_study: dict = {}
        sentences: dict[str, None] = {}
        for study, text in study_text.items():
            if study in self._cache or not isinstance(text, str):
                continue
            names = (wanted or {}).get(study) or list(DISEASE_SYNONYMS)
            names = set(names) | {_ALIASES[n] for n in names if n in _ALIASES}
            keep = []
            for sent in _SENT_SPLIT.split(" ".join(text.split())):
                low = sent.lower()
                if _NEGATION.search(low):
                    continue
                if any(self._synonym_re[n].search(low) for n in names if n in self._synonym_re):
                    keep.append(low)
                    sentences.setdefault(low, None)
            per_study[study] = keep
        parsed = {}
        for sent, doc in zip(sentences, self.nlp.pipe(list(sentences), batch_size=512)):
            ents = doc.ents
            locs = [e.text for e in ents if e.label_ == "LOCATION"]
            levs = [e.text for e in ents if e.label_ == "LEVEL"]
            attrs = (normalise_location(" ".join(locs)) if locs else None,
                     normalise_level(" ".join(levs)) if levs else None)
            parsed[sent] = ([e.ent_id_ for e in ents if e.label_ == "FINDING"], attrs)
        for study, keep in per_study.items():
            found: dict = {}
            for sent in keep:
                names, attrs = parsed[sent]
                for n in names:
                    found.setdefault(n, attrs)
            self._cache[study] = found

    def get(self, study, finding):
        return self._cache.get(study, {}).get(finding, (None, None))


def _lookup(table: dict, study, finding):
    v = table.get((study, finding))
    if v is None and finding in _ALIASES:
        v = table.get((study, _ALIASES[finding]))
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
            l2, s2 = report.get(study, op.finding)
            if l2 is None and s2 is None and op.finding in _ALIASES:
                l2, s2 = report.get(study, _ALIASES[op.finding])
            if loc is None and l2:
                loc, src["location"] = l2, "report"
            elif side_only and l2 and l2 != loc and l2.split()[0] == loc:
                loc, src["location"] = l2, "question+report"
            if need_sev and sev is None and s2:
                sev, src["severity"] = s2, "report"
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
