"""Diff-VQA ``difference`` answer -> operations (data-contract §5.5), all or nothing.

Grammar of an answer (each sentence ends with ``". "``; the final space may be missing):

    nothing has changed.
  | LEVEL* ADD? MISSING?            (at least one sentence, in this order)
  LEVEL   = "the level of <d> has changed from <levels> to <levels>. "
  ADD     = "the main image has an additional finding of <d> than the reference image. "
          | "the main image has additional findings of <list> than the reference image. "
  MISSING = "the main image is missing the finding of <d> than the reference image. "
          | "the main image is missing the findings of <list> than the reference image. "
  <list>  = "<d1>, <d2>, ..., and <dn>"   (n >= 2, serial comma even for two)

``<d>`` must be a disease of the vocabulary (``infection`` included); ``<levels>`` one or more level
entries. ``from a to b to c`` is split where both sides are valid levels; when several splits are
valid the pair's own level records (``level_hints``) decide, else the first (shortest ``from``) wins
and the operation's sources say ``ambiguous``. Anything else raises ``UnparseableAnswer`` with the
reason: no answer is ever half-parsed.
"""

from __future__ import annotations

import re

from .operation import Operation
from .vocabulary import DISEASES, is_level

NOTHING = "nothing has changed."
_DISEASE_SET = frozenset(DISEASES)

_LEVEL_RE = re.compile(r"the level of (?P<d>[a-z][a-z \-]*?) has changed from (?P<levels>[a-z][a-z \-]*?)\. ")
_ADD1_RE = re.compile(r"the main image has an additional finding of (?P<d>[a-z][a-z \-]*?) than the reference image\. ")
_ADDN_RE = re.compile(r"the main image has additional findings of (?P<l>[a-z][a-z ,\-]*?) than the reference image\. ")
_MISS1_RE = re.compile(r"the main image is missing the finding of (?P<d>[a-z][a-z \-]*?) than the reference image\. ")
_MISSN_RE = re.compile(r"the main image is missing the findings of (?P<l>[a-z][a-z ,\-]*?) than the reference image\. ")


class UnparseableAnswer(ValueError):
    """The answer does not fit the grammar; ``reason`` is short, ``text`` the answer."""

    def __init__(self, reason: str, text: str):
        super().__init__(f"{reason}: {text!r}")
        self.reason = reason
        self.text = text


def _disease(name: str, text: str) -> str:
    if name not in _DISEASE_SET:
        raise UnparseableAnswer(f"unknown finding '{name}'", text)
    return name


def _list(items: str, text: str) -> list[str]:
    parts = items.split(", ")
    if len(parts) < 2 or not parts[-1].startswith("and "):
        raise UnparseableAnswer("malformed list of findings (expected 'a, b, and c')", text)
    parts[-1] = parts[-1][4:]
    return [_disease(p, text) for p in parts]


def split_levels(levels: str, hints: tuple | None = None) -> tuple[str, str, bool]:
    """Split ``"<from> to <to>"`` into (from, to, ambiguous); raises ValueError when no split is valid."""
    words = levels.split(" ")
    cands = []
    for i, w in enumerate(words):
        if w == "to" and 0 < i < len(words) - 1:
            a, b = " ".join(words[:i]), " ".join(words[i + 1:])
            if is_level(a) and is_level(b):
                cands.append((a, b))
    if not cands:
        raise ValueError(f"no valid 'from X to Y' split of levels {levels!r}")
    if len(cands) > 1 and hints:
        for c in cands:
            if c == tuple(hints):
                return c[0], c[1], False
    return cands[0][0], cands[0][1], len(cands) > 1


def parse_difference(answer: str, level_hints: dict | None = None) -> list[Operation]:
    """Operations of a difference answer, in answer order (changes, adds, removes).

    ``level_hints``: optional {finding: (past level, current level)} from the pair's records, used
    only to resolve ambiguous ``from a to b to c`` sentences. Raises ``UnparseableAnswer``.
    """
    if not isinstance(answer, str):
        raise UnparseableAnswer("answer is not text", str(answer))
    text = answer
    if text.rstrip(" ") == NOTHING:
        return []
    if text != text.lstrip() or not text.strip():
        raise UnparseableAnswer("empty answer or leading space", text)
    s = text.rstrip(" ") + " "
    pos, stage = 0, 0  # 0: level sentences allowed, 1: after add, 2: after missing
    ops: list[Operation] = []
    seen: dict[str, str] = {}

    def note(d: str, kind: str):
        if d in seen:
            raise UnparseableAnswer(f"finding '{d}' appears twice ({seen[d]}, {kind})", text)
        seen[d] = kind

    while pos < len(s):
        m = _LEVEL_RE.match(s, pos)
        if m:
            if stage > 0:
                raise UnparseableAnswer("level-change sentence after an added/missing sentence", text)
            d = _disease(m.group("d"), text)
            note(d, "change")
            try:
                a, b, ambiguous = split_levels(m.group("levels"), (level_hints or {}).get(d))
            except ValueError as err:
                raise UnparseableAnswer(str(err), text) from None
            if a == b:
                raise UnparseableAnswer(f"level of '{d}' changed to the same level", text)
            src = {"from_level": "answer", "to_level": "answer"}
            if ambiguous:
                src["levels_split"] = "ambiguous"
            ops.append(Operation("change", d, from_level=a, to_level=b, sources=src))
            pos = m.end()
            continue
        m = _ADD1_RE.match(s, pos) or _ADDN_RE.match(s, pos)
        if m:
            if stage >= 1:
                raise UnparseableAnswer("added-findings sentence out of order or repeated", text)
            names = [_disease(m.group("d"), text)] if "d" in m.groupdict() else _list(m.group("l"), text)
            for d in names:
                note(d, "add")
                ops.append(Operation("add", d))
            stage, pos = 1, m.end()
            continue
        m = _MISS1_RE.match(s, pos) or _MISSN_RE.match(s, pos)
        if m:
            if stage >= 2:
                raise UnparseableAnswer("missing-findings sentence repeated", text)
            names = [_disease(m.group("d"), text)] if "d" in m.groupdict() else _list(m.group("l"), text)
            for d in names:
                note(d, "remove")
                ops.append(Operation("remove", d))
            stage, pos = 2, m.end()
            continue
        raise UnparseableAnswer(f"unrecognised sentence at character {pos}", text)
    if not ops:
        raise UnparseableAnswer("no sentence", text)
    return ops
