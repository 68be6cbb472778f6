"""Vocabularies of Medical-Diff-VQA (data-contract §5.7) and the mappings the editor needs.

* ``DISEASES``: the 30 official names plus ``infection`` (present in the released answers, kept as its
  own finding name; it maps to the MS-CXR category Pneumonia).
* ``canonical_finding(text)``: official name for an official name or a report synonym (case,
  hyphens and extra spaces ignored), else None.
* ``LEVELS`` / ``is_level(text)``: level words; a severity is one or more level entries joined by a space.
* ``normalise_location(text)``: the canonical text of the (side, zone) a phrase names, from the table
  ``data/locations.csv`` (side x zone, compound zones such as ``middle to lower``, ``bibasilar``,
  ``perihilar``) and ``data/location_words.csv`` (side words, nouns, hedges); it covers the
  ``position_change.csv`` rules (``left-sided``->``left``, ``left base``->``left lung base``,
  ``lobe``->``lung``, ``mid``->``middle``) and is idempotent.
* ``finding_category(finding)``: one of the 8 MS-CXR categories or None.
* ``location_side_zone(location)``: (side in left/right/bilateral/None, zone in ``ZONES``/None).
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

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
    "oedema": "edema", "pulmonary oedema": "edema", "ptx": "pneumothorax", "pleural fluid": "pleural effusion",
    "heart enlargement": "cardiomegaly", "cardiac enlargement": "cardiomegaly", "big heart": "cardiomegaly",
    "enlarged heart silhouette": "enlargement of the cardiac silhouette", "infiltrate": "lung opacity",
    "infiltrates": "lung opacity", "airspace disease": "lung opacity", "lung opacities": "lung opacity",
    "pulmonary vascular congestion": "vascular congestion", "congestion": "vascular congestion",
    "atelectases": "atelectasis", "collapse": "atelectasis", "pneumonias": "pneumonia", "fractures": "fracture",
    "hiatal hernia": "hernia", "heart": "cardiomegaly", "heart size": "cardiomegaly",
    "cardiac silhouette": "enlargement of the cardiac silhouette",
})
# longest first, so `pleural effusion` wins over `effusion`
FINDING_PHRASES: tuple[str, ...] = tuple(sorted(_SYNONYM_TO_OFFICIAL, key=lambda s: (-len(s.split()), -len(s), s)))


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


# ---------------------------------------------------------------- locations (data/locations.csv)
# A location is (side, zone): side in left/right/bilateral/None, zone one of the table's zones
# (simple: apical/upper/middle/lower/basal; compound: `upper to middle`, `middle to lower`, `medial
# basal`; others: perihilar, retrocardiac, costophrenic, pleural, pericardial, hemithorax, rib, soft
# tissues) or None. Its text is the table's canonical string for (side, zone); every phrase of the
# table (and data/location_words.csv) reads back to its (side, zone), so normalising is idempotent.
_DATA = Path(__file__).with_name("data")
SIDES: tuple[str | None, ...] = (None, "left", "right", "bilateral")
_SIDE_COLUMNS = {"none": None, "left": "left", "right": "right", "bilateral": "bilateral"}


def _load_location_tables():
    canonical: dict[tuple, str] = {}
    phrases: dict[tuple[str, ...], tuple] = {}
    zones: list[str] = []
    with open(_DATA / "locations.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            zone = row["zone"] or None
            if zone is not None:
                zones.append(zone)
            for col, side in _SIDE_COLUMNS.items():
                if row[col]:
                    canonical[(side, zone)] = row[col]
            for item in filter(None, row["phrases"].split(";")):
                phrase, _, implied = item.partition("=")
                phrases[tuple(phrase.split())] = ("zone", zone, implied or None)
    with open(_DATA / "location_words.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            kind, _, value = row["meaning"].partition("=")
            kind, weak = (kind[:-1], True) if kind.endswith("~") else (kind, False)
            phrases[tuple(row["phrase"].split())] = (kind, value or None, weak)
    return canonical, phrases, tuple(zones)


LOCATION_TABLE, _LOCATION_PHRASES, ZONES = _load_location_tables()
CANONICAL_LOCATIONS: tuple[str, ...] = tuple(LOCATION_TABLE[k] for k in LOCATION_TABLE if k != (None, None))
_PHRASE_MAXLEN = max(len(p) for p in _LOCATION_PHRASES)
# simple zones met together -> the compound zone of the table
_COMPOUND = {frozenset({"upper", "middle"}): "upper to middle", frozenset({"middle", "lower"}): "middle to lower",
             frozenset({"lower", "basal"}): "basal", frozenset({"upper", "lower"}): "upper and lower", frozenset({"apical", "upper"}): "apical"}
_GENERIC_ZONES = ("pleural", "hemithorax")
# all words that may appear in a location (typed or canonical)
LOCATION_VOCAB: frozenset = frozenset(
    w for p in _LOCATION_PHRASES for w in p) | frozenset(w for t in CANONICAL_LOCATIONS for w in t.split()) | {"and", "to"}
# Adjective-like location words: a location made only of these is rendered before the finding.
LOCATION_ADJECTIVES = frozenset({"left", "right", "bilateral", "bibasilar", "apical", "basal", "perihilar",
                                 "retrocardiac", "pleural", "pericardial"})


def _location_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", clean(text).replace("-", " "))


def parse_location(text) -> tuple[str | None, str | None, list[str]]:
    """(side, zone, unknown words) of a location phrase, by the tables (longest phrase first)."""
    if text is None:
        return None, None, []
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text if t is not None)
    return _parse_location_str(str(text))


@lru_cache(maxsize=65536)
def _parse_location_str(text: str):
    words = _location_words(text)
    explicit, weak, zones, unknown, medial = set(), set(), [], [], False
    i = 0
    while i < len(words):
        for n in range(min(_PHRASE_MAXLEN, len(words) - i), 0, -1):
            hit = _LOCATION_PHRASES.get(tuple(words[i:i + n]))
            if hit is not None:
                break
        else:
            if words[i] not in ("and", "to"):
                unknown.append(words[i])
            i += 1
            continue
        kind, value, extra = hit
        if kind == "zone":
            zones.append(value)
            if extra:
                weak.add(extra)
        elif kind == "side":
            (weak if extra else explicit).add(value)
        elif kind == "modifier" and value == "medial":
            medial = True
        i += n
    if "bilateral" in explicit or {"left", "right"} <= explicit:
        side = "bilateral"
    elif explicit:
        side = explicit.pop()
    elif weak:
        side = "bilateral" if "bilateral" in weak or {"left", "right"} <= weak else weak.pop()
    else:
        side = None
    zone = None
    distinct = list(dict.fromkeys(z for z in zones if z is not None))
    if len(distinct) > 1:
        specific = [z for z in distinct if z not in _GENERIC_ZONES] or distinct
        zone = _COMPOUND.get(frozenset(specific), specific[0])
    elif distinct:
        zone = distinct[0]
    if medial and zone == "basal":
        zone = "medial basal"
    return side, zone, unknown


def canonical_location(side, zone) -> str | None:
    """The table's text of (side, zone); None for (None, None)."""
    if side is None and zone is None:
        return None
    try:
        return LOCATION_TABLE[(side, zone)]
    except KeyError:
        raise ValueError(f"no location ({side!r}, {zone!r}) in {_DATA / 'locations.csv'}") from None


def normalise_location(text) -> str | None:
    """Canonical location text (data/locations.csv) of a phrase or a list of words; None when it names no
    side or zone. ``normalise_location(normalise_location(x)) == normalise_location(x)``."""
    side, zone, _ = parse_location(text)
    return canonical_location(side, zone)


def finding_category(finding) -> str | None:
    """MS-CXR category (one of ``MSCXR_CATEGORIES``) of a finding name or synonym, else None."""
    if not finding:
        return None
    official = canonical_finding(finding) or clean(finding)
    return _CATEGORY_OF.get(official)


def location_side_zone(location) -> tuple[str | None, str | None]:
    """(side, zone) of a location: side in left/right/bilateral/None; zone one of ``ZONES`` (compound zones
    such as ``middle to lower`` kept whole) or None. ``bibasilar``/``lung bases`` are bilateral and basal."""
    if not location:
        return None, None
    side, zone, _ = parse_location(location)
    return side, zone


_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def swap_sides(text: str) -> str:
    """Swap the words left and right (any case, also in ``left-sided``)."""
    return re.sub(r"\b(left|right|Left|Right|LEFT|RIGHT)\b", lambda m: _SWAP[m.group(1)], text)
