"""Vocabularies of Medical-Diff-VQA (data-contract §5.7) and the mappings the editor needs.

* ``DISEASES``: the 30 official names plus ``infection`` (present in the released answers, kept as its
  own finding name; it maps to the MS-CXR category Pneumonia).
* ``canonical_finding(text)``: official name for an official name or a report synonym (case,
  hyphens and extra spaces ignored), else None.
* ``LEVELS`` / ``is_level(text)``: level words; a severity is one or more level entries joined by a space.
* ``normalise_location(text)``: ``position_change.csv`` rules (``left-sided``->``left``, ``left base``->
  ``left lung base``, ``lobe``->``lung``, ``mid ``->``middle ``), without a leading ``the`` or a
  trailing ``area``/``region``/``side``.
* ``finding_category(finding)``: one of the 8 MS-CXR categories or None.
* ``location_side_zone(location)``: (side in left/right/bilateral/None, zone in
  apical/upper/middle/lower/basal/None).
"""

from __future__ import annotations

import re
from functools import lru_cache

# official_name -> report-text synonyms (disease_lib.csv), in file order.
DISEASE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "pleural effusion": ("pleural effusions", "pleural effusion", "effusion", "effusions", "pleural fluid"),
    "atelectasis": ("volume loss", "collapse", "atelectasis", "atelectases", "atelectatic changes", "atelectatic change"),
    "cardiomegaly": ("cardiomegaly", "enlarged"),
    "enlargement of the cardiac silhouette": ("enlargement of the cardiac silhouette",),
    "edema": ("pulmonary edema", "edema"),
    "hernia": ("hiatal hernia", "hiatus hernia", "hernia"),
    "vascular congestion": ("pulmonary vascular congestion", "vascular congestion"),
    "hilar congestion": ("hilar congestion",),
    "pneumothorax": ("pneumothorax",),
    "heart failure": ("cardiac decompensation", "chf", "congestive heart failure", "heart failure"),
    "lung opacity": ("lung opacification", "airspace opacities", "airspace opacity", "opacification", "opacity",
                     "opacities", "lung opacity", "lung opacities"),
    "pneumonia": ("pneumonia",),
    "tortuosity of the descending aorta": ("tortuosity of the descending aorta",),
    "scoliosis": ("thoracolumbar scoliosis", "scoliosis"),
    "gastric distention": ("gastric distention",),
    "hypoxemia": ("hypoxemia",),
    "hypertensive heart disease": ("hypertensive heart disease", "htn"),
    "hematoma": ("hematoma",),
    "tortuosity of the thoracic aorta": ("tortuosity of the thoracic aorta",),
    "contusion": ("pulmonary contusion", "contusion"),
    "emphysema": ("emphysema",),
    "granuloma": ("granulomatous disease", "granuloma"),
    "calcification": ("calcifications", "calcification"),
    "pleural thickening": ("pleural thickening",),
    "thymoma": ("thymoma",),
    "blunting of the costophrenic angle": (
        "blunting of the costophrenic angles", "blunting of the right costophrenic angle",
        "blunting of the left costophrenic angle", "blunting of the costophrenic angle",
        "blunting of the left costodiaphragmatic", "blunting of the right costodiaphragmatic"),
    "consolidation": ("consolidation",),
    "fracture": ("fractures", "fracture"),
    "pneumomediastinum": ("pneumomediastinum",),
    "air collection": ("air collection",),
    # released answers contain `infection` (data-contract §5.6/§5.8): its own finding name
    "infection": ("infection",),
}
DISEASES: tuple[str, ...] = tuple(DISEASE_SYNONYMS)

# level_lib.csv (duplicates removed, file order kept)
LEVELS: tuple[str, ...] = (
    "moderately", "moderate", "acute", "mildly", "mild", "small", "severe", "moderate to large",
    "moderate to severe", "mild to moderate", "minimal", "subtle", "massive", "minimally",
    "increasing", "decreasing", "minor",
)
# location_lib.csv words, plus the nouns that appear in normalised locations/post-locations.
LOCATION_WORDS: tuple[str, ...] = (
    "left", "right", "retrocardiac", "pericardial", "bibasilar", "bilateral", "basilar",
    "apicolateral", "basal", "lobe", "lung", "area", "base", "apical", "pleural", "upper", "lower",
    "middle", "mid", "rib", "lungs", "lobes", "bases", "medial", "hemithorax", "soft", "tissues",
    "to", "and", "probably", "also",
)
TYPES: tuple[str, ...] = (
    "interstitial", "layering", "dense", "parenchymal", "compressive", "obstructive", "linear",
    "plate-like", "patchy", "ground-glass", "calcified", "scattered", "focal", "multifocal", "multi-focal",
)
# Adjective-like location words: a location made only of these is rendered before the finding.
LOCATION_ADJECTIVES = frozenset({
    "left", "right", "retrocardiac", "pericardial", "bibasilar", "bilateral", "basilar",
    "apicolateral", "basal", "apical", "upper", "lower", "middle", "medial", "to",
})

MSCXR_CATEGORIES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion",
    "Pneumonia", "Pneumothorax",
)
_CATEGORY_OF = {
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "enlargement of the cardiac silhouette": "Cardiomegaly",
    "consolidation": "Consolidation",
    "edema": "Edema",
    "lung opacity": "Lung Opacity",
    "pleural effusion": "Pleural Effusion",
    "pneumonia": "Pneumonia",
    "infection": "Pneumonia",
    "pneumothorax": "Pneumothorax",
}

_SYNONYM_TO_OFFICIAL: dict[str, str] = {}
for _official, _syns in DISEASE_SYNONYMS.items():
    _SYNONYM_TO_OFFICIAL[_official] = _official
for _official, _syns in DISEASE_SYNONYMS.items():
    for _s in _syns:
        _SYNONYM_TO_OFFICIAL.setdefault(_s, _official)
# what a person types
_SYNONYM_TO_OFFICIAL.update({
    "effusion": "pleural effusion", "effusions": "pleural effusion", "pulmonary edema": "edema",
    "enlarged heart": "cardiomegaly", "enlarged cardiac silhouette": "enlargement of the cardiac silhouette",
    "opacity": "lung opacity", "opacities": "lung opacity", "airspace opacity": "lung opacity",
    "pneumothoraces": "pneumothorax", "consolidations": "consolidation",
})
# longest first, so `pleural effusion` wins over `effusion`
FINDING_PHRASES: tuple[str, ...] = tuple(sorted(_SYNONYM_TO_OFFICIAL, key=lambda s: (-len(s.split()), -len(s), s)))

_SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bibasilar": "bilateral",
               "both": "bilateral", "bases": "bilateral", "lungs": "bilateral"}
_ZONE_WORDS = {
    "apical": "apical", "apex": "apical", "apices": "apical", "apicolateral": "apical",
    "upper": "upper", "middle": "middle", "mid": "middle", "lower": "lower",
    "basal": "basal", "base": "basal", "bases": "basal", "basilar": "basal", "bibasilar": "basal",
    "retrocardiac": "lower",
}


def clean(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation."""
    return " ".join(str(text).lower().replace("\u2019", "'").split()).strip(" .,;:!?")


def canonical_finding(text: str) -> str | None:
    """Official disease name for an official name or synonym (e.g. ``Effusion`` -> ``pleural effusion``)."""
    t = clean(text).replace("-", " ")
    return _SYNONYM_TO_OFFICIAL.get(t)


# `large` is not a level_lib entry but is a token of the released vocabulary (from `moderate to large`);
# the synthetic demo uses it alone, and a person types it: accepted as a level word.
EXTRA_LEVEL_WORDS: tuple[str, ...] = ("large",)
_LEVEL_SET = frozenset(LEVELS) | frozenset(EXTRA_LEVEL_WORDS)
_LEVEL_MAXLEN = max(len(x.split()) for x in LEVELS)


def is_level(text: str) -> bool:
    """True if ``text`` is one or more level entries joined by spaces (``mild to moderate``, ``small moderate``)."""
    words = clean(text).replace("-", " ").split()
    if not words:
        return False
    ok = [False] * (len(words) + 1)
    ok[0] = True
    for i in range(len(words)):
        if not ok[i]:
            continue
        for n in range(1, _LEVEL_MAXLEN + 1):
            if i + n <= len(words) and " ".join(words[i:i + n]) in _LEVEL_SET:
                ok[i + n] = True
    return ok[-1]


def normalise_level(text) -> str | None:
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text)
    return _normalise_level_str(text)


@lru_cache(maxsize=65536)
def _normalise_level_str(text: str) -> str | None:
    t = clean(text).replace("-", " ")
    return t or None


_POSITION_CHANGE = (("mid ", "middle "), ("lobes", "lungs"), ("lobe", "lung"), ("left base", "left lung base"),
                    ("right base", "right lung base"), ("region", "area"), ("left-sided", "left"),
                    ("right-sided", "right"), ("left sided", "left"), ("right sided", "right"))


def normalise_location(text) -> str | None:
    """Normalised location string (None for empty). Accepts a list of words or a phrase."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text if t is not None)
    return _normalise_location_str(text)


@lru_cache(maxsize=65536)
def _normalise_location_str(text: str) -> str | None:
    t = clean(text)
    if not t:
        return None
    t = " " + t + " "
    for old, new in _POSITION_CHANGE:
        t = t.replace(old, new)
    t = t.replace(" lobe ", " lung ").replace(" lobes ", " lungs ")
    words = t.split()
    if words and words[0] == "the":
        words = words[1:]
    while words and words[-1] in ("area", "region", "side"):
        words = words[:-1]
    # `left lung` on its own means the side
    out = " ".join(words)
    if out in ("left lung", "right lung"):
        out = out.split()[0]
    return out or None


def finding_category(finding) -> str | None:
    """MS-CXR category (one of ``MSCXR_CATEGORIES``) of a finding name or synonym, else None."""
    if not finding:
        return None
    official = canonical_finding(finding) or clean(finding)
    return _CATEGORY_OF.get(official)


def location_side_zone(location) -> tuple[str | None, str | None]:
    """(side, zone) of a location: side in left/right/bilateral/None; zone in apical/upper/middle/lower/basal/None.

    ``bibasilar``/``lung bases`` are bilateral and basal; ``mid to lower`` gives the first zone named.
    """
    if not location:
        return None, None
    words = clean(location).replace("-", " ").split()
    sides = {_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS}
    if "left" in sides and "right" in sides:
        side = "bilateral"
    elif "left" in sides:
        side = "left"
    elif "right" in sides:
        side = "right"
    elif "bilateral" in sides:
        side = "bilateral"
    else:
        side = None
    zones = [_ZONE_WORDS[w] for w in words if w in _ZONE_WORDS]
    return side, (zones[0] if zones else None)


_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def swap_sides(text: str) -> str:
    """Swap the words left and right (any case, also in ``left-sided``)."""
    return re.sub(r"\b(left|right|Left|Right|LEFT|RIGHT)\b", lambda m: _SWAP[m.group(1)], text)
