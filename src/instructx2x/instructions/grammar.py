"""The instruction grammar: operations <-> instruction text, one documented form, round-trip exact.

Rendering (``render_instruction``), one clause per operation, clauses joined by ``"; "`` in list
order (the builder's order is the answer's: changes, then adds, then removes), first letter upper case::

    add     : "Add a[n] [<severity> ][<loc-adj> ]<finding>[ in the <loc>]"
    remove  : "Remove the [<severity> ][<loc-adj> ]<finding>[ in the <loc>]"
    change  : "Change the level of [<loc-adj> ]<finding>[ in the <loc>] from <from> to <to>"
    change, typed without levels (``direction``):
              "Increase|Decrease the level of <finding...> by one step"
              "Increase|Decrease the level of <finding...> to <to>"

Locations are the canonical texts of ``data/locations.csv`` (``vocabulary.normalise_location``). One
made only of adjectives (``left``, ``right``, ``bilateral``, ``bibasilar``, ``right apical``,
``retrocardiac``...) goes before the finding, any other (``right lung base``, ``left lower lung``)
after ``in the``. A level containing `` to `` is written with hyphens (``mild-to-moderate``) so that
``from X to Y`` stays unambiguous.

Examples: ``Add a moderate left pleural effusion``; ``Remove the atelectasis in the right lung base``;
``Change the level of edema from mild to moderate``; ``Increase the level of pleural effusion by one step``.

Parsing (``parse_instruction``) reads that form back exactly and accepts what a person types: any
case, ``please``/``can you``, no article, ``the finding of``, ``left-sided``, synonyms (``effusion``,
``pulmonary oedema``, ``CHF``, ``enlarged heart``), verbs in both directions (``insert``/``delete``/
``get rid of``/``resolve``; ``increase``/``worsen``/``enlarge``/``make ... bigger`` and
``decrease``/``improve``/``reduce``/``make ... smaller``), report-like participles (``Worsening left
effusion``, ``Improving edema``, ``Resolved pneumothorax``, ``New right effusion``), severity words
(``enlarged``/``big``/``large`` -> ``large``, ``slight`` -> ``mild``, ``tiny`` -> ``small``, ``marked`` ->
``severe``), clauses separated by ``.``, ``;``, ``then`` or ``and`` + verb, several findings after one
verb (``Add edema and a small effusion``), levels with or without hyphens. A change with no level
(``Increase the effusion``) is a one-step change of the current level: ``Operation.one_step``, stated by
``to_cli_dict``. A bare ``change`` without levels has no direction and is refused. Text it cannot
read raises ``UnparseableInstruction`` with the closest known form (``suggestion``: "did you mean
..."); inference uses the same parser to find findings and locations.
"""

from __future__ import annotations

import difflib
import re

from instructx2x.core.errors import InputError

from .operation import Operation
from .vocabulary import (
    FINDING_PHRASES,
    LEVELS,
    LOCATION_ADJECTIVES,
    LOCATION_VOCAB,
    canonical_finding,
    finding_category,  # noqa: F401  (re-exported for the editor)
    is_level,
    location_side_zone,  # noqa: F401  (re-exported for the editor)
    normalise_location,
    swap_sides,
)

__all__ = ["Operation", "UnparseableInstruction", "render_instruction", "parse_instruction",
           "finding_category", "location_side_zone", "flip_instruction", "flip_operations"]


class UnparseableInstruction(InputError):
    """Text the grammar cannot read; ``reason`` says why, ``suggestion`` is the closest form it reads
    (rendered canonically) or None."""

    def __init__(self, reason: str, suggestion: str | None = None):
        self.reason = reason
        self.suggestion = suggestion
        super().__init__(reason + (f'; did you mean "{suggestion}"?' if suggestion else ""))


def _level_text(level: str) -> str:
    return level.replace(" ", "-") if " to " in f" {level} " else level


def _finding_phrase(op: Operation) -> str:
    loc = op.location
    if loc and set(loc.split()) <= LOCATION_ADJECTIVES:
        return f"{loc} {op.finding}"
    if loc:
        return f"{op.finding} in the {loc}"
    return op.finding


def render_operation(op: Operation) -> str:
    if op.op == "change":
        verb = op.direction or "change"
        text = f"{verb} the level of {_finding_phrase(op)}"
        if op.from_level:
            text += f" from {_level_text(op.from_level)}"
        if op.to_level:
            text += f" to {_level_text(op.to_level)}"
        if op.one_step:
            text += " by one step"
        return text
    body = (f"{_level_text(op.severity)} " if op.severity else "") + _finding_phrase(op)
    if op.op == "add":
        article = "an" if body[0] in "aeiou" else "a"
        return f"add {article} {body}"
    return f"remove the {body}"


def render_instruction(ops) -> str:
    """Instruction text of a list of operations (see the module doc for the grammar)."""
    ops = list(ops)
    if not ops:
        raise ValueError("no operation to render")
    text = "; ".join(render_operation(o) for o in ops)
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------- parsing
# verb -> (operation, direction); multi-word verbs are matched first
_VERBS: dict[tuple[str, ...], tuple[str, str | None]] = {}
for _w in ("add", "insert", "introduce", "create", "show", "put", "place", "draw", "generate", "simulate",
           "develop", "new", "include"):
    _VERBS[(_w,)] = ("add", None)
for _w in ("remove", "delete", "erase", "eliminate", "clear", "resolve", "resolved", "take", "drop", "lose",
           "get", "cure", "treat", "hide", "subtract", "undo"):
    _VERBS[(_w,)] = ("remove", None)
for _w in ("increase", "increasing", "increased", "worsen", "worsening", "worsened", "enlarge", "enlarging",
           "enlarged", "grow", "growing", "expand", "expanding", "extend", "intensify", "augment", "raise",
           "more", "progress", "progressing"):
    _VERBS[(_w,)] = ("change", "increase")
for _w in ("decrease", "decreasing", "decreased", "improve", "improving", "improved", "reduce", "reducing",
           "reduced", "shrink", "shrinking", "diminish", "diminishing", "lessen", "lower", "less", "lighten",
           "regress", "regressing", "minimize", "minimise"):
    _VERBS[(_w,)] = ("change", "decrease")
for _w in ("change", "alter", "modify", "adjust", "make", "set", "turn"):
    _VERBS[(_w,)] = ("change", None)
_VERBS[("get", "rid", "of")] = ("remove", None)
_VERBS[("take", "away")] = ("remove", None)
_VERBS[("take", "out")] = ("remove", None)
_VERBS[("clear", "out")] = ("remove", None)
_VERBS[("clear", "up")] = ("remove", None)
_VERBS[("make", "disappear")] = ("remove", None)
_VERBS[("no", "more")] = ("remove", None)
# verbs that start a new clause after `and`/`,` (not those that also name a place, a level or a finding:
# `upper and lower lung`, `an increasing effusion`, `enlarged`, `new`)
_SPLIT_VERBS = sorted({k[0] for k in _VERBS} - {
    "lower", "more", "less", "new", "increasing", "decreasing", "enlarged", "enlarging", "improved", "increased",
    "decreased", "reduced", "worsened", "resolved", "show", "put", "place", "draw", "get", "lose", "drop", "include",
    "develop", "set", "turn", "take", "no", "growing", "expanding", "progressing", "regressing", "shrinking",
    "diminishing", "reducing", "improving", "worsening"}, key=len, reverse=True)
# `make the effusion bigger`: the comparative after the target gives the direction
_COMPARATIVE = {"worse": "increase", "bigger": "increase", "larger": "increase", "greater": "increase",
                "more": "increase", "severe": "increase", "denser": "increase", "better": "decrease",
                "smaller": "decrease", "less": "decrease", "milder": "decrease", "lighter": "decrease",
                "fainter": "decrease", "disappear": "remove", "go": "remove", "vanish": "remove"}
# typed severity words -> level words of the vocabulary
_SEVERITY_WORDS = {"enlarged": "large", "big": "large", "bigger": "large", "larger": "large", "huge": "massive",
                   "giant": "massive", "tiny": "small", "little": "small", "trace": "minimal", "slight": "mild",
                   "slightly": "mildly", "marked": "severe", "markedly": "severe", "extensive": "severe",
                   "significant": "moderate", "medium": "moderate", "modest": "mild"}
_POLITE = re.compile(r"^(?:(?:please|kindly|now|also|just|and|then|(?:can|could|would|will) you|i(?:'d| would) like"
                     r"(?: you)? to|i want(?: you)? to|try to|let's|lets|go ahead and)\s+)+")
_TRAILING = re.compile(r"\s+(?:please|thanks|thank you)$")
_CLAUSE_SPLIT = re.compile(r"\s*[.;!?]\s*|\s*,?\s+(?:and\s+)?then\s+|\s*,?\s+and\s+(?=(?:please\s+)?(?:%s)\b)"
                           r"|\s*,\s*(?=(?:please\s+)?(?:%s)\b)" % ("|".join(_SPLIT_VERBS), "|".join(_SPLIT_VERBS)))
_FILLER = {"a", "an", "the", "some", "of", "finding", "findings", "new", "any", "sign", "signs", "evidence",
           "level", "levels", "severity", "degree", "extent", "size", "amount", "grade", "out", "away", "there", "is",
           "with", "please", "image", "to", "this", "from", "its", "it", "that", "existing", "current", "present",
           "visible", "by", "one", "step", "notch", "bit", "in", "at", "on", "over", "within", "xray", "x", "ray",
           "radiograph", "patient", "patient's", "s", "all", "entire", "whole", "completely", "fully"}
_LEVEL_WORDS = frozenset(w for lev in LEVELS for w in lev.split()) | {"large"}
_KNOWN_WORDS = (frozenset(w for p in FINDING_PHRASES for w in p.split()) | LOCATION_VOCAB | _LEVEL_WORDS | _FILLER
                | {w for k in _VERBS for w in k} | set(_COMPARATIVE) | set(_SEVERITY_WORDS) | {"and", "then"})


# Findings named first, their change stated after them, as reports and people write it: `left effusion
# has increased`, `the edema is better`, `right pneumothorax, resolved`, `effusion increased to moderate`.
# The predicate word -> the verb that starts the canonical clause (auxiliaries before it are skipped).
_PREDICATES = {
    **{w: "increase" for w in ("increased", "increasing", "worse", "worsened", "worsening", "larger", "bigger",
                               "enlarged", "enlarging", "progressed", "progressing", "grown", "growing", "greater",
                               "expanded", "expanding")},
    **{w: "decrease" for w in ("decreased", "decreasing", "better", "improved", "improving", "smaller", "reduced",
                               "regressed", "regressing", "diminished", "shrunk", "lessened")},
    **{w: "remove" for w in ("resolved", "resolving", "gone", "cleared", "disappeared", "absent", "removed")},
    **{w: "add" for w in ("new", "appeared", "developed", "present", "seen", "visible")},
}
_AUXILIARIES = {"has", "have", "had", "is", "are", "was", "were", "been", "be", "become", "became", "got", "gets",
                "now", "slightly", "much", "somewhat", "further", "since", "then", "also", "completely", "fully",
                "newly", "a", "bit", "little"}
_EXISTENTIAL = re.compile(r"^(?:there\s+(?:is|are)|there's)\s+(?:now\s+)?")


def _predicate_first(words: list[str]) -> list[str] | None:
    """``finding ... <auxiliaries> <predicate> [to/from levels]`` rewritten as ``<verb> finding ... [levels]``
    (None when the clause has no such predicate after a finding)."""
    ws = [w for w in words if w != ","]
    for k in range(1, len(ws)):
        verb = _PREDICATES.get(ws[k])
        if verb is None or _find_finding(ws[:k]) is None:
            continue
        tail = ws[k + 1:]
        if tail and tail[0] not in ("to", "from"):
            continue  # more words after the predicate: not this form
        head = ws[:k]
        negated, skipped, degree = False, [], []
        while head and (head[-1] in _AUXILIARIES or head[-1] in ("not", "no", "longer") or _is_severity(head[-1])):
            negated |= head[-1] in ("not", "no", "longer")
            (degree if _is_severity(head[-1]) else skipped).append(head.pop())
        if negated:  # `no longer present`, `not seen`: gone; a negated change (`not worse`) is not guessed
            return ["remove"] + head if verb == "add" and not tail else None
        # `the heart is (mildly) enlarged` states cardiomegaly (add, with that level); `the heart has
        # enlarged` / `is more enlarged` changes it
        finding = _find_finding(head)
        if (ws[k] == "enlarged" and finding is not None and finding[2] == "cardiomegaly" and not tail
                and set(skipped) & {"is", "are"} and not set(skipped) & {"has", "have", "had", "become", "became"}):
            verb = "add"
        if verb in ("increase", "decrease"):
            return [verb] + head + tail  # a degree word (`slightly worse`) is the size of the step: one step
        return None if tail else [verb] + degree[::-1] + head
    return None


def _is_severity(word: str) -> bool:
    return word not in _AUXILIARIES and (is_level(word) or word in _SEVERITY_WORDS)


def _find_finding(words: list[str]) -> tuple[int, int, str] | None:
    """First (longest) finding phrase of ``words``; the bare word ``enlarged`` (a cardiomegaly synonym in
    reports) counts only when no other finding is named (``an enlarged pleural effusion``)."""
    hits = []
    for i in range(len(words)):
        for phrase in FINDING_PHRASES:
            pw = phrase.split()
            if words[i:i + len(pw)] == pw:
                hits.append((i, i + len(pw), canonical_finding(phrase)))
                break
    if not hits:
        return None
    real = [h for h in hits if words[h[0]:h[1]] != ["enlarged"]]
    return (real or hits)[0]


def _split_adjectives(words: list[str], clause: str) -> tuple[str | None, str | None]:
    """Pre-finding words -> (severity, location)."""
    sev, loc = [], []
    i = 0
    while i < len(words):
        w = words[i]
        # multi-word level entries first (mild to moderate, moderate to severe/large)
        if i + 2 < len(words) and words[i + 1] == "to" and is_level(" ".join(words[i:i + 3])) \
                and not (words[i + 2] in LOCATION_VOCAB and not is_level(words[i + 2])):
            sev.extend(words[i:i + 3])
            i += 3
            continue
        parts = w.split("-")
        if is_level(w.replace("-", " ")):
            sev.extend(parts)
        elif w in _SEVERITY_WORDS:
            sev.append(_SEVERITY_WORDS[w])
        elif w in LOCATION_VOCAB:
            loc.append(w)
        elif w in _FILLER:
            pass
        else:
            raise UnparseableInstruction(f"unknown word {w!r} in {clause!r}")
        i += 1
    return (" ".join(sev) or None), normalise_location(" ".join(loc))


def _parse_target(words: list[str], clause: str) -> tuple[str, str | None, str | None]:
    """Words naming one finding with its adjectives and location -> (finding, severity, location)."""
    hit = _find_finding(words)
    if hit is None:
        raise UnparseableInstruction(f"no finding of the vocabulary in {clause!r}")
    start, end, finding = hit
    sev, loc = _split_adjectives(words[:start], clause)
    after = [w for w in words[end:] if w not in _FILLER]
    if after:
        bad = [w for w in after if w not in LOCATION_VOCAB]
        if bad:
            raise UnparseableInstruction(f"unknown word(s) {bad} after the finding in {clause!r}")
        loc2 = normalise_location(" ".join(after))
        loc = normalise_location(f"{loc} {loc2}") if loc and loc2 else (loc or loc2)
    return finding, sev, loc


def _split_findings(words: list[str]) -> list[list[str]]:
    """``a, b and c`` after one verb -> chunks, only when every chunk names a finding."""
    chunks, cur = [], []
    for w in words:
        if w in ("and", ",", "&"):
            chunks.append(cur)
            cur = []
        else:
            cur.append(w)
    chunks.append(cur)
    chunks = [c for c in chunks if c]
    if len(chunks) > 1 and all(_find_finding(c) for c in chunks):
        return chunks
    return [[w for w in words if w != ","]]


def _levels(lv: list[str], clause: str) -> tuple[str, str]:
    cands = []
    for i, w in enumerate(lv):
        if w == "to" and 0 < i < len(lv) - 1:
            a = " ".join(lv[:i]).replace("-", " ")
            b = " ".join(lv[i + 1:]).replace("-", " ")
            if is_level(a) and is_level(b):
                cands.append((a, b))
    if not cands:
        raise UnparseableInstruction(f"levels not understood in {clause!r}")
    a, b = cands[0]
    return " ".join(a.split()), " ".join(b.split())


def _words(clause: str) -> list[str]:
    raw = clause.lower().replace(",", " , ").replace("x-ray", "xray")
    return re.findall(r"[a-z]+(?:[-'][a-z]+)*|,", raw.replace("left-sided", "left").replace("right-sided", "right"))


def _verb(words: list[str]) -> tuple[tuple[str, str | None], int] | None:
    for n in (3, 2, 1):
        v = _VERBS.get(tuple(words[:n]))
        if v is not None:
            return v, n
    return None


def _parse_change(finding_words: list[str], level_words: list[str] | None, direction: str | None, clause: str,
                  to_only: list[str] | None = None) -> list[Operation]:
    target = [w for w in finding_words if w != ","]
    finding, _sev, loc = _parse_target(target, clause)
    if level_words is not None:
        a, b = _levels([w for w in level_words if w != ","], clause)
        return [Operation("change", finding, location=loc, from_level=a, to_level=b,
                          sources={"from_level": "text", "to_level": "text"})]
    if to_only:
        b = " ".join(w for w in to_only if w != ",").replace("-", " ")
        b = " ".join(_SEVERITY_WORDS.get(w, w) for w in b.split())
        if not is_level(b):
            raise UnparseableInstruction(f"level {b!r} not understood in {clause!r}")
        return [Operation("change", finding, location=loc, to_level=b, direction=direction,
                          sources={"to_level": "text", **({"direction": "text"} if direction else {})})]
    if direction is None:
        raise UnparseableInstruction(
            f"a change needs 'from <level> to <level>', 'to <level>', or a direction (increase/decrease): {clause!r}")
    return [Operation("change", finding, location=loc, direction=direction, sources={"direction": "text"})]


def _parse_clause(clause: str) -> list[Operation]:
    clause = _TRAILING.sub("", _POLITE.sub("", clause.strip(" ,")))
    clause = _EXISTENTIAL.sub("add ", clause) if _EXISTENTIAL.match(clause) else clause
    words = _words(clause)
    if not words:
        return []
    hit = _verb(words)
    if hit is None and (reordered := _predicate_first(words)) is not None:
        words = reordered
        hit = _verb(words)
    if hit is None:
        raise UnparseableInstruction(f"clause does not start with a verb (add/remove/increase/decrease...): {clause!r}")
    (verb, direction), n = hit
    rest = words[n:]
    if words[0] == "take" and rest[:1] in (["away"], ["out"]) or words[0] == "clear" and rest[:1] == ["out"]:
        rest = rest[1:]
    if verb == "change":
        # `make/turn X bigger|worse|smaller|better|disappear`, `make X go away`
        causative = words[0] in ("make", "turn", "set")
        if causative and rest[-2:] == ["go", "away"]:
            rest = rest[:-1]
        if causative and rest and rest[-1] in _COMPARATIVE and "from" not in rest:
            d = _COMPARATIVE[rest[-1]]
            rest = rest[:-1]
            while rest and rest[-1] in ("more", "less", "much", "a", "bit", "little", "slightly"):
                rest = rest[:-1]
            if d == "remove":
                verb, direction = "remove", None
                rest = [w for w in rest if w not in ("go",)]
            else:
                direction = d
        elif causative and "from" not in rest and "to" not in rest:
            raise UnparseableInstruction(f"'{words[0]}' needs a comparative (bigger/smaller/worse/better): {clause!r}")
    if verb == "change":
        if "from" in rest:
            k = rest.index("from")
            target = rest[:k]
            while target and target[0] in ("the", "level", "severity", "of"):
                target = target[1:]
            return _parse_change(target, rest[k + 1:], direction, clause)
        # `increase the effusion to moderate`: the last `to` followed only by level words
        for k in range(len(rest) - 1, 0, -1):
            if rest[k] == "to" and all(is_level(w.replace("-", " ")) or w in _SEVERITY_WORDS or w == "to"
                                       for w in rest[k + 1:]) and rest[k + 1:]:
                return _parse_change(rest[:k], None, direction, clause, to_only=rest[k + 1:])
        return _parse_change(rest, None, direction, clause)
    ops = []
    for chunk in _split_findings(rest):
        finding, sev, loc = _parse_target(chunk, clause)
        src = {}
        if sev:
            src["severity"] = "text"
        if loc:
            src["location"] = "text"
        ops.append(Operation(verb, finding, location=loc, severity=sev, sources=src))
    return ops


def _parse(text: str) -> list[Operation]:
    if not isinstance(text, str) or not text.strip():
        raise UnparseableInstruction("empty instruction")
    t = " ".join(text.strip().replace("\u2019", "'").split()).lower()
    clauses = [c for c in _CLAUSE_SPLIT.split(t) if c and c.strip(" ,")]
    ops: list[Operation] = []
    for c in clauses:
        try:
            ops.extend(_parse_clause(c.strip(" ,")))
        except UnparseableInstruction as err:
            # `effusion worse and edema better`: clauses without a leading verb joined by `and`
            parts = [p for p in re.split(r"\s*,?\s+and\s+|\s*,\s*", c) if p.strip(" ,")]
            if len(parts) < 2:
                raise
            try:
                ops.extend(op for p in parts for op in _parse_clause(p.strip(" ,")))
            except UnparseableInstruction:
                raise err from None
    if not ops:
        raise UnparseableInstruction(f"no operation in {text!r}")
    return ops


def parse_instruction(text: str) -> list[Operation]:
    """Operations of an instruction (the rendered form or typed text); raises ``UnparseableInstruction``
    with the closest form it can read as ``suggestion``."""
    try:
        return _parse(text)
    except UnparseableInstruction as err:
        suggestion = suggest(text) if isinstance(text, str) and text.strip() else None
        raise UnparseableInstruction(err.reason, suggestion) from None


def suggest(text: str) -> str | None:
    """The closest instruction the grammar reads, rendered canonically: misspelt words replaced by the
    nearest vocabulary word, a missing verb taken as ``add``; a change without levels or direction
    becomes a one-step increase. None when nothing close is found."""
    t = " ".join(text.strip().split()).lower()
    tokens = re.findall(r"[a-z]+(?:[-'][a-z]+)*|[^a-z\s]+", t)
    fixed = []
    for w in tokens:
        if not re.match(r"[a-z]", w) or w in _KNOWN_WORDS or "-" in w and all(p in _KNOWN_WORDS for p in w.split("-")):
            fixed.append(w)
            continue
        close = difflib.get_close_matches(w, _KNOWN_WORDS, n=1, cutoff=0.8)
        fixed.append(close[0] if close else w)
    candidates = [" ".join(fixed)]
    candidates.append("add " + candidates[0])
    candidates.append(re.sub(r"^(change|alter|modify|adjust)\b", "increase", candidates[0]))
    for cand in candidates:
        cand = re.sub(r"\s+([,.;])", r"\1", cand)
        if cand == t:
            continue
        try:
            return render_instruction(_parse(cand))
        except (UnparseableInstruction, ValueError):
            continue
    return None


def flip_operations(ops) -> list[Operation]:
    """Operations with left and right swapped (for horizontally flipped training images)."""
    from dataclasses import replace

    return [replace(o, location=swap_sides(o.location) if o.location else o.location) for o in ops]


def flip_instruction(text: str) -> str:
    """The instruction with left and right swapped: goes with a horizontal flip of both images."""
    return swap_sides(text)
