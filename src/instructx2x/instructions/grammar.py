"""The instruction grammar: operations <-> instruction text, one documented form, round-trip exact.

Rendering (``render_instruction``), one clause per operation, clauses joined by ``"; "`` in list
order (the builder's order is the answer's: changes, then adds, then removes), first letter upper case::

    add     : "Add a[n] [<severity> ][<loc-adj> ]<finding>[ in the <loc>]"
    remove  : "Remove the [<severity> ][<loc-adj> ]<finding>[ in the <loc>]"
    change  : "Change the level of [<loc-adj> ]<finding>[ in the <loc>] from <from> to <to>"

A location made only of adjectives (``left``, ``right``, ``bilateral``, ``bibasilar``, ``left basal``,
``retrocardiac``...) goes before the finding, any other (``right lung base``, ``left lower lung``) after
``in the``. A level containing `` to `` is written with hyphens (``mild-to-moderate``) so that
``from X to Y`` stays unambiguous.

Examples: ``Add a moderate left pleural effusion``; ``Remove the atelectasis in the right lung base``;
``Change the level of edema from mild to moderate``.

Parsing (``parse_instruction``) reads that form back exactly and accepts what a person types: any
case, no article, ``the finding of``, ``left-sided``, synonyms (``effusion``, ``pulmonary edema``,
``CHF``), verbs such as ``insert``/``delete``/``increase``, clauses separated by ``.``, ``;``, ``then``
or ``and`` + verb, several findings after one verb (``Add edema and a small effusion``), levels with
or without hyphens. Text it cannot read raises ``UnparseableInstruction``; inference uses the same
parser to find findings and locations.
"""

from __future__ import annotations

import re

from .operation import Operation
from .vocabulary import (
    FINDING_PHRASES,
    LOCATION_ADJECTIVES,
    LOCATION_WORDS,
    canonical_finding,
    finding_category,  # noqa: F401  (re-exported for the editor)
    is_level,
    location_side_zone,  # noqa: F401  (re-exported for the editor)
    normalise_location,
    swap_sides,
)

__all__ = ["Operation", "UnparseableInstruction", "render_instruction", "parse_instruction",
           "finding_category", "location_side_zone", "flip_instruction", "flip_operations"]


class UnparseableInstruction(ValueError):
    pass


def _level_text(level: str) -> str:
    return level.replace(" ", "-") if " to " in f" {level} " else level


def _finding_phrase(op: Operation) -> str:
    loc = op.location
    if loc and set(loc.split()) <= LOCATION_ADJECTIVES and loc.split()[-1] != "to":
        return f"{loc} {op.finding}"
    if loc:
        return f"{op.finding} in the {loc}"
    return op.finding


def render_operation(op: Operation) -> str:
    if op.op == "change":
        return (f"change the level of {_finding_phrase(op)} from {_level_text(op.from_level or '')} "
                f"to {_level_text(op.to_level or '')}")
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
_VERBS = {
    "add": "add", "insert": "add", "introduce": "add", "create": "add", "show": "add", "put": "add",
    "remove": "remove", "delete": "remove", "erase": "remove", "eliminate": "remove", "clear": "remove",
    "resolve": "remove", "take": "remove",
    "change": "change", "alter": "change", "modify": "change", "increase": "change", "decrease": "change",
    "worsen": "change", "improve": "change", "reduce": "change", "make": "change", "adjust": "change",
}
_CLAUSE_SPLIT = re.compile(r"\s*[.;]\s*|\s*,?\s+(?:and\s+)?then\s+|\s*,?\s+and\s+(?=(?:%s)\b)|\s*,\s*(?=(?:%s)\b)"
                           % ("|".join(_VERBS), "|".join(_VERBS)))
_WORD = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_FILLER = {"a", "an", "the", "some", "of", "finding", "findings", "new", "any", "sign", "signs", "evidence",
           "level", "severity", "out", "away", "there", "is", "with", "please", "image", "to", "this", "from"}
_LOC_PREP = ("in the", "at the", "of the", "on the", "in", "at", "on", "over the", "within the")
_LOC_WORDS = frozenset(LOCATION_WORDS) | {"left-sided", "right-sided", "sided", "apex", "apices", "both",
                                          "hemithoraces", "zone", "zones", "side", "region", "lobes"}


def _normalise_words(text: str) -> list[str]:
    t = text.lower().replace("left-sided", "left").replace("right-sided", "right")
    return _WORD.findall(t)


def _find_finding(words: list[str]) -> tuple[int, int, str] | None:
    best = None
    for i in range(len(words)):
        for phrase in FINDING_PHRASES:
            pw = phrase.split()
            if words[i:i + len(pw)] == pw:
                if best is None or len(pw) > best[1] - best[0]:
                    best = (i, i + len(pw), canonical_finding(phrase))
                break
        if best is not None and best[0] == i:
            break
    return best


def _split_adjectives(words: list[str], clause: str) -> tuple[str | None, str | None]:
    """Pre-finding words -> (severity, location)."""
    sev, loc = [], []
    i = 0
    while i < len(words):
        w = words[i]
        # multi-word level entries first (mild to moderate, moderate to severe/large)
        if i + 2 < len(words) and words[i + 1] == "to" and is_level(" ".join(words[i:i + 3])) \
                and not (words[i + 2] in _LOC_WORDS and not is_level(words[i + 2])):
            sev.extend(words[i:i + 3])
            i += 3
            continue
        parts = w.split("-")
        if is_level(w.replace("-", " ")):
            sev.extend(parts)
        elif w in _LOC_WORDS:
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
    after = words[end:]
    if after:
        while after and after[0] in ("in", "at", "of", "on", "over", "within", "the"):
            after = after[1:]
        bad = [w for w in after if w not in _LOC_WORDS and w not in ("the",)]
        if bad:
            raise UnparseableInstruction(f"unknown word(s) {bad} after the finding in {clause!r}")
        loc2 = normalise_location(" ".join(after))
        if loc and loc2:
            loc = normalise_location(f"{loc} {loc2}")
        else:
            loc = loc or loc2
    return finding, sev, loc


def _split_findings(words: list[str]) -> list[list[str]]:
    """``a, b and c`` after one verb -> chunks, only when every chunk names a finding."""
    chunks, cur = [], []
    for w in words:
        if w == "and" or w == ",":
            chunks.append(cur)
            cur = []
        else:
            cur.append(w)
    chunks.append(cur)
    chunks = [c for c in chunks if c]
    if len(chunks) > 1 and all(_find_finding(c) for c in chunks):
        return chunks
    return [[w for w in words if w != ","]]


def _parse_clause(clause: str) -> list[Operation]:
    raw = clause.lower().replace(",", " , ")
    words = [w for w in re.findall(r"[a-z]+(?:[-'][a-z]+)*|,", raw.replace("left-sided", "left")
                                   .replace("right-sided", "right"))]
    if not words:
        return []
    verb = _VERBS.get(words[0])
    if verb is None:
        raise UnparseableInstruction(f"clause does not start with a verb (add/remove/change...): {clause!r}")
    rest = words[1:]
    if words[0] == "take" and rest[:1] == ["away"] or words[0] in ("take", "clear") and rest[:1] == ["out"]:
        rest = rest[1:]
    if verb == "change":
        try:
            k = rest.index("from")
        except ValueError:
            raise UnparseableInstruction(f"a change needs 'from <level> to <level>': {clause!r}") from None
        target = [w for w in rest[:k] if w != ","]
        while target and target[0] in ("the", "level", "severity", "of"):
            target = target[1:]
        finding, sev, loc = _parse_target(target, clause)
        lv = [w for w in rest[k + 1:] if w != ","]
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
        return [Operation("change", finding, location=loc, from_level=" ".join(a.split()),
                          to_level=" ".join(b.split()), sources={"from_level": "text", "to_level": "text"})]
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


def parse_instruction(text: str) -> list[Operation]:
    """Operations of an instruction (the rendered form or typed text); raises ``UnparseableInstruction``."""
    if not isinstance(text, str) or not text.strip():
        raise UnparseableInstruction("empty instruction")
    t = " ".join(text.strip().split())
    # `then` splits, `and` splits only before a verb
    clauses = [c for c in _CLAUSE_SPLIT.split(t.lower()) if c and c.strip(" ,")]
    ops: list[Operation] = []
    for c in clauses:
        ops.extend(_parse_clause(c.strip(" ,")))
    if not ops:
        raise UnparseableInstruction(f"no operation in {text!r}")
    return ops


def flip_operations(ops) -> list[Operation]:
    """Operations with left and right swapped (for horizontally flipped training images)."""
    from dataclasses import replace

    return [replace(o, location=swap_sides(o.location) if o.location else o.location) for o in ops]


def flip_instruction(text: str) -> str:
    """The instruction with left and right swapped: goes with a horizontal flip of both images."""
    return swap_sides(text)
