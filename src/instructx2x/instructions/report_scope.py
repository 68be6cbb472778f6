"""Report text: each location and level attached to the finding it modifies, by scope (ConText-style
rules over spaCy's tokenizer, sentencizer and ``PhraseMatcher``; ``spacy.blank("en")``, no model
download). ``ReportExtractor`` is the third source of ``attributes`` (after key info and questions);
``instructx2x extract-attributes`` prints what it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .vocabulary import (
    _LOCATION_PHRASES,
    DISEASE_SYNONYMS,
    EXTRA_LEVEL_WORDS,
    LEVELS,
    canonical_finding,
    normalise_level,
    normalise_location,
)

# "infection" and "pneumonia" name one finding in the reports
FINDING_ALIASES = {"infection": "pneumonia", "pneumonia": "infection"}


# ---------------------------------------------------------------- report text: attachment by scope
# ConText-style rules over spaCy's tokenizer, sentencizer and PhraseMatcher (spacy.blank("en"): no
# trained pipeline, no download). Per sentence:
# 1. matches: FINDING (disease_lib synonyms), LOCATION (every phrase of data/locations.csv and
#    data/location_words.csv), LEVEL (level_lib words, `large`, `trace`->minimal, `tiny`->small),
#    NEGATION cues before (`no`, `without`, `no evidence of`, `negative for`, `rule out`...) and after the
#    finding (`has resolved`, `is no longer seen`, `not seen`...), TERMINATORS (`but`, `however`, ...);
#    overlapping matches keep the longest (`lung opacity` beats the location word `lung`);
# 2. clauses: the sentence is cut at `,` `;` `and` `or` `with` `as well as` `plus` `while`..., but only
#    once the current clause already names a finding, so `left and right effusions`, `bilateral upper
#    and lower lobe opacities` and `small, left-sided effusion` stay whole;
# 3. attachment: adjacent location words form one location; a location after a preposition (`in the`,
#    `at the`, `on the`, `of the`, `within`, `involving`, `along`, `at`, `over`) attaches to the nearest
#    finding before it, any other location and every level to the nearest finding after it, else before
#    it, never outside the clause. A clause that names no finding (`, left greater than right`, `, now
#    moderate`) qualifies the nearest finding of the clause before. A finding marked `adjacent`,
#    `associated`, `overlying` or `underlying` with no location of its own takes the location of the
#    finding it is adjacent to (the previous clause's);
# 4. negation: a pre-negation cue negates every finding after it up to a terminator or the sentence's
#    end (`No pneumothorax or effusion`); a post-negation cue negates the findings of its clause before it.
# Every attribute keeps its span (character offsets in the report text) and the matched words.

_NEG_PRE = ("no", "without", "clear of", "free of", "negative for", "rule out", "ruled out", "r / o", "r/o",
            "no evidence of", "no evidence for", "no signs of", "no sign of", "no definite", "absence of",
            "resolution of", "no longer", "not", "nor", "less likely")
# look like negation, are not: `no change in the small left effusion`, `pneumonia cannot be excluded`
_PSEUDO_NEG = ("no change", "no significant change", "no interval change", "no substantial change",
               "no significant interval change", "no appreciable change", "no definite change", "not changed",
               "not significantly changed", "cannot exclude", "can not exclude", "cannot be excluded",
               "can not be excluded", "not excluded", "not be excluded", "not ruled out", "cannot be ruled out",
               "no increase", "no decrease", "not increased", "no worsening", "not worsened", "no improvement")
_NEG_POST = ("has resolved", "have resolved", "had resolved", "resolved", "has cleared", "have cleared",
             "is no longer seen", "are no longer seen", "no longer seen", "no longer present", "is no longer present",
             "is not seen", "are not seen", "not seen", "not visualized", "is not visualized", "not identified",
             "is absent", "are absent", "has disappeared", "have disappeared", "disappeared", "is gone",
             "are gone")
_TERMINATORS = ("but", "however", "although", "though", "except", "whereas", "yet", "aside from", "apart from",
                "otherwise", ";")
_SPLITS = (",", ";", "and", "or", "with", "as well as", "plus", "while", "whereas", "but", "however",
           "although", "though", "which", "that", "there is", "there are", "also")
_PREPOSITIONS = {"in", "at", "on", "of", "within", "involving", "along", "over", "to", "throughout", "the",
                 "both", "from", "overlying", "projecting"}
_ADJACENT = {"adjacent", "associated", "overlying", "underlying", "nearby", "surrounding", "accompanying",
             # a finding that names what an earlier one may be shares its place
             "may represent", "represent", "represents", "could represent", "may reflect", "reflect", "reflects",
             "could reflect", "likely", "likely reflecting", "consistent with", "suggestive of", "concerning for",
             "compatible with", "due to", "possibly", "which may be", "may be", "worrisome for", "suspicious for"}
# report level words that are not in level_lib, mapped to it
_REPORT_LEVELS = {"trace": "minimal", "tiny": "small"}
# `The heart is mildly enlarged`, `Heart size remains moderately enlarged`: one cardiomegaly mention
# whose level is the adverb inside it (the phrase is matched whole, so the level is read from its words)
_HEART_DEGREES = ("mildly", "moderately", "severely", "markedly", "slightly", "minimally", "massively",
                  "substantially", "borderline")
_ENLARGED_HEART_STATEMENTS = {
    f"{subject} {verb} {degree}enlarged"
    for subject in ("heart", "heart size", "cardiac silhouette", "cardiac size", "cardiac contour")
    for verb in ("is", "remains", "appears", "is again", "is still", "looks", "seems")
    for degree in ("", *(d + " " for d in _HEART_DEGREES))}
_HEART_DEGREE_LEVELS = {"slightly": "mildly", "minimally": "mildly", "markedly": "severely", "massively": "severely",
                        "substantially": "severely", "borderline": "mildly"}
_NONLEVEL_AS_LEVEL = {"large": "large"}


@dataclass
class Mention:
    """One finding named in a report sentence, with what attaches to it."""

    finding: str
    start: int
    end: int
    text: str
    negated: bool = False
    location_words: list = field(default_factory=list)   # [(start, end, text)]
    level_words: list = field(default_factory=list)      # [(start, end, text, level)]
    inherited_location: tuple | None = None              # (start, end, text) of the neighbour's location
    sentence: tuple = (0, 0)

    @property
    def location(self) -> str | None:
        words = [t for _, _, t in self.location_words]
        if not words and self.inherited_location:
            words = [self.inherited_location[2]]
        return normalise_location(" ".join(words)) if words else None

    @property
    def severity(self) -> str | None:
        return normalise_level(" ".join(lv for *_, lv in self.level_words)) if self.level_words else None

    def to_dict(self) -> dict:
        return {"finding": self.finding, "mention": [self.start, self.end, self.text], "negated": self.negated,
                "location": self.location, "severity": self.severity,
                "location_spans": [list(x) for x in self.location_words]
                + ([list(self.inherited_location) + ["adjacent"]] if self.inherited_location and not self.location_words
                   else []),
                "severity_spans": [[a, b, t] for a, b, t, _ in self.level_words],
                "sentence": list(self.sentence)}


_SENTENCE_END = re.compile(r"[.!?]\s+")


def _shift(m: Mention, delta: int) -> Mention:
    """A copy of a mention parsed from a sentence alone, with its spans moved to the report's offsets."""
    return Mention(m.finding, m.start + delta, m.end + delta, m.text, m.negated,
                   [(a + delta, b + delta, t) for a, b, t in m.location_words],
                   [(a + delta, b + delta, t, lv) for a, b, t, lv in m.level_words],
                   None if m.inherited_location is None else
                   (m.inherited_location[0] + delta, m.inherited_location[1] + delta, m.inherited_location[2]),
                   (m.sentence[0] + delta, m.sentence[1] + delta))


def _bare_noun(text: str) -> bool:
    return set(re.findall(r"[a-z]+", text.lower())) <= {"lung", "lungs", "lobe", "lobes", "field", "fields", "zone",
                                                       "zones", "area", "region"}


def report_body(text: str) -> tuple[str, int]:
    """(text, offset): from ``FINDINGS:`` if present, else from ``IMPRESSION:``, else the whole report
    (as Medical-Diff-VQA reads reports, data-contract §3.2); newlines become spaces (offsets kept)."""
    text = text.replace("\r", " ").replace("\n", " ")
    for header in ("FINDINGS:", "IMPRESSION:"):
        i = text.find(header)
        if i >= 0:
            return text[i + len(header):], i + len(header)
    return text, 0


class ReportExtractor:
    """Location and level of each finding of a report, attached by scope (see the rules above).

    ``extract_all({study: text}, wanted)`` parses the reports that name a wanted finding; ``get(study,
    finding)`` gives (location, severity) of the first non-negated mentions that have them, ``detail``
    the mentions with their spans. ``mentions(text)`` parses one text (the ``extract-attributes`` CLI).
    """

    def __init__(self):
        import spacy
        from spacy.matcher import PhraseMatcher

        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        self.nlp = nlp
        self._ids = {}
        matcher = PhraseMatcher(nlp.vocab, attr="LOWER")

        def add(label: str, key: str, phrases):
            docs = []
            for ph in sorted(set(phrases)):
                for variant in {ph, ph.replace(" ", "-")}:
                    docs.append(nlp.make_doc(variant))
            match_id = f"{label}|{key}"
            self._ids[nlp.vocab.strings.add(match_id)] = (label, key)
            matcher.add(match_id, docs)

        for official, syns in DISEASE_SYNONYMS.items():
            names = set(syns) | {official}
            if official == "cardiomegaly":
                names -= {"enlarged"}  # `enlarged` alone names a size, not cardiomegaly, unless nothing else
                names |= {"enlarged heart", "enlarged cardiac silhouette"} | _ENLARGED_HEART_STATEMENTS
            add("FINDING", official, names)
        loc_phrases = {" ".join(p) for p in _LOCATION_PHRASES if _LOCATION_PHRASES[p][0] != "noun"}
        loc_phrases |= {"lung", "lungs", "lobe", "lobes", "zone", "zones", "area", "region", "field", "fields",
                        "greater than", "more than", "sided"}
        add("LOCATION", "loc", loc_phrases)
        for lev in LEVELS + EXTRA_LEVEL_WORDS:
            add("LEVEL", lev, [lev])
        for word, lev in _REPORT_LEVELS.items():
            add("LEVEL", lev, [word])
        add("NEG_PRE", "neg", _NEG_PRE)
        add("NEG_POST", "neg", _NEG_POST)
        add("TERM", "term", _TERMINATORS)
        add("PSEUDO", "pseudo", _PSEUDO_NEG)
        add("SPLIT", "split", _SPLITS)
        add("ADJ", "adj", _ADJACENT)
        self.matcher = matcher
        self._synonym_re = {
            official: re.compile(r"\b(?:" + "|".join(re.escape(x) for x in sorted(set(syns) | {official},
                                                                               key=len, reverse=True)) + r")")
            for official, syns in DISEASE_SYNONYMS.items()}
        self._cache: dict = {}

    # -- one text ----------------------------------------------------------------------------------
    def mentions(self, text: str, offset: int = 0) -> list[Mention]:
        return self._mentions(self.nlp(text), offset)

    def _mentions(self, doc, offset: int = 0) -> list[Mention]:
        from spacy.util import filter_spans

        spans = []
        for match_id, a, b in self.matcher(doc):
            label, key = self._ids[match_id]
            span = doc[a:b]
            span.label_ = label
            spans.append((span, key))
        keys = {(sp.start, sp.end, sp.label_): k for sp, k in spans}
        # longest first; a split/terminator word inside a longer phrase (`mild to moderate`) loses
        kept = filter_spans([sp for sp, _ in spans])
        out: list[Mention] = []
        for sent in doc.sents:
            items = [(sp, keys[(sp.start, sp.end, sp.label_)]) for sp in kept if sent.start <= sp.start < sent.end]
            out.extend(self._sentence(sent, items, offset))
        return out

    def _sentence(self, sent, items, offset) -> list[Mention]:
        doc = sent.doc
        sent_span = (sent.start_char + offset, sent.end_char + offset)
        # clauses: lists of items; a split point opens a new clause only once a finding was named
        clauses: list[list] = [[]]
        negating = False
        pending_adjacent = False
        for sp, key in items:
            lab = sp.label_
            if lab == "PSEUDO":
                continue
            if lab in ("SPLIT", "TERM"):
                if lab == "TERM":
                    negating = False
                if sp.text.lower() not in ("or", ","):
                    pending_adjacent = False
                if any(x[0].label_ == "FINDING" for x in clauses[-1]):
                    clauses.append([])
                continue
            if lab == "NEG_PRE":
                negating = True
                continue
            if lab == "NEG_POST":
                for x in clauses[-1]:
                    if isinstance(x[1], Mention):
                        x[1].negated = True
                continue
            if lab == "ADJ":
                pending_adjacent = True
                continue
            if lab == "FINDING":
                m = Mention(key, sp.start_char + offset, sp.end_char + offset, sp.text, negated=negating,
                            sentence=sent_span)
                m._adjacent = pending_adjacent  # type: ignore[attr-defined]
                if key == "cardiomegaly":  # a degree word inside `heart is mildly enlarged`
                    for tok in sp:
                        if tok.lower_ in _HEART_DEGREES:
                            m.level_words.append((tok.idx + offset, tok.idx + len(tok) + offset, tok.text,
                                                  _HEART_DEGREE_LEVELS.get(tok.lower_, tok.lower_)))
                clauses[-1].append((sp, m))
                continue
            clauses[-1].append((sp, key))
        mentions: list[Mention] = []
        prev_last: Mention | None = None
        for clause in clauses:
            found = [(sp, m) for sp, m in clause if isinstance(m, Mention)]
            groups = self._location_groups(doc, clause)
            for kind, a, b, start_tok, payload in groups:
                if kind == "LOCATION" and _bare_noun(payload) and not (
                        start_tok > 0 and doc[start_tok - 1].text.lower() in _PREPOSITIONS):
                    continue  # `Lungs are clear ...`: a subject, not a place given to a finding
                target = self._target(kind, start_tok, a, found, doc) or prev_last
                if target is None:
                    continue
                if kind == "LOCATION":
                    target.location_words.append((a + offset, b + offset, payload))
                else:
                    target.level_words.append((a + offset, b + offset, doc.char_span(a, b).text, payload))
            last = prev_last
            for _, m in found:
                if getattr(m, "_adjacent", False) and not m.location_words and last is not None:
                    loc = last.location_words
                    if loc:
                        m.inherited_location = (loc[0][0], loc[-1][1], " ".join(t for _, _, t in loc))
                    elif last.inherited_location:
                        m.inherited_location = last.inherited_location
                mentions.append(m)
                last = m
            if found:
                prev_last = found[-1][1]
        return mentions

    @staticmethod
    def _location_groups(doc, clause):
        """LOCATION matches next to each other (only `-`, `to`, `and`, `than` between) merged; LEVELs as is.
        Yields (kind, start_char, end_char, first token index, text or level)."""
        out = []
        cur = None
        for sp, key in clause:
            if isinstance(key, Mention):
                if cur:
                    out.append(cur)
                    cur = None
                continue
            if sp.label_ == "LEVEL":
                if cur:
                    out.append(cur)
                    cur = None
                out.append(("LEVEL", sp.start_char, sp.end_char, sp.start, key))
                continue
            if cur and all(t.text.lower() in ("-", "to", "and", "than", "the", "of") or t.is_space
                           for t in doc[cur[5]:sp.start]):
                cur = ("LOCATION", cur[1], sp.end_char, cur[3], doc.char_span(cur[1], sp.end_char).text, sp.end)
            else:
                if cur:
                    out.append(cur)
                cur = ("LOCATION", sp.start_char, sp.end_char, sp.start, sp.text, sp.end)
        if cur:
            out.append(cur)
        return [(k, a, b, t, p) for k, a, b, t, p, *_ in out
                if k == "LEVEL" or normalise_location(p) is not None]

    @staticmethod
    def _target(kind, start_tok, start_char, found, doc):
        """The finding a modifier attaches to: after a preposition, the nearest finding before it; else the
        nearest after it; else the other direction; None when the clause has no finding."""
        if not found:
            return None
        before = [m for sp, m in found if sp.start < start_tok]
        after = [m for sp, m in found if sp.start > start_tok]
        prev_word = doc[start_tok - 1].text.lower() if start_tok > 0 else ""
        if kind == "LOCATION" and prev_word in _PREPOSITIONS and before:
            return before[-1]
        if after:
            return after[0]
        return before[-1] if before else None

    # -- many reports ------------------------------------------------------------------------------
    def extract_all(self, study_text: dict, wanted: dict | None = None) -> None:
        """Parse {study_id: text}; ``wanted`` {study_id: findings} limits the work to the sentences that name
        one of them (every rule acts within a sentence, so nothing is lost), each distinct sentence once."""
        per_study: dict = {}
        sentences: dict[str, None] = {}
        for study, text in study_text.items():
            if study in self._cache or not isinstance(text, str):
                continue
            body, off = report_body(text)
            names = (wanted or {}).get(study) or list(DISEASE_SYNONYMS)
            names = set(names) | {FINDING_ALIASES[n] for n in names if n in FINDING_ALIASES}
            regexes = [self._synonym_re[n] for n in names if n in self._synonym_re]
            keep = []
            starts = [0] + [m.end() for m in _SENTENCE_END.finditer(body)]
            for a, b in zip(starts, starts[1:] + [len(body)]):
                sent = body[a:b]
                low = sent.lower()
                if any(rx.search(low) for rx in regexes):
                    keep.append((off + a, sent))
                    sentences.setdefault(sent, None)
            per_study[study] = keep
        parsed = dict(zip(sentences, (self._mentions(doc) for doc in self.nlp.pipe(list(sentences), batch_size=512))))
        for study, keep in per_study.items():
            self._cache[study] = [_shift(m, start) for start, sent in keep for m in parsed[sent]]

    def detail(self, study, finding) -> dict:
        """{location, severity, location_span, severity_span}: the first non-negated mentions that have them."""
        out = {"location": None, "severity": None, "location_span": None, "severity_span": None}
        for m in self._cache.get(study, []):
            if m.finding != finding or m.negated:
                continue
            if out["location"] is None and m.location:
                spans = m.to_dict()["location_spans"]
                out["location"], out["location_span"] = m.location, f"{spans[0][0]}:{spans[-1][1]}"
            if out["severity"] is None and m.severity:
                out["severity"] = m.severity
                out["severity_span"] = f"{m.level_words[0][0]}:{m.level_words[-1][1]}"
        return out

    def get(self, study, finding):
        d = self.detail(study, finding)
        return d["location"], d["severity"]


def span_record(text_span, words):
    if not text_span:
        return None
    a, b = (int(x) for x in text_span.split(":"))
    return {"start": a, "end": b, "text": words}


def extract_report_attributes(text: str, finding: str, extractor: ReportExtractor | None = None) -> dict:
    """What the ``extract-attributes`` CLI prints: the finding's location and severity in a report, with
    source and spans, and every mention of the finding (negated ones too)."""
    official = canonical_finding(finding) or finding
    if official not in DISEASE_SYNONYMS:
        raise ValueError(f"unknown finding {finding!r}; expected one of the vocabulary (e.g. 'pleural effusion')")
    ex = extractor or ReportExtractor()
    body, off = report_body(text)
    ms = [m for m in ex.mentions(body, off) if m.finding in {official, FINDING_ALIASES.get(official)}]
    ex._cache["_cli"] = ms
    d = ex.detail("_cli", ms[0].finding if ms else official)
    span_text = {k: (text[int(v.split(":")[0]):int(v.split(":")[1])] if v else None)
                 for k, v in (("location", d["location_span"]), ("severity", d["severity_span"]))}
    return {"finding": official, "source": "report", "location": d["location"], "severity": d["severity"],
            "location_span": span_record(d["location_span"], span_text["location"]),
            "severity_span": span_record(d["severity_span"], span_text["severity"]),
            "mentions": [m.to_dict() for m in ms]}


