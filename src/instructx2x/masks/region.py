"""Choosing the region of an edit (at inference): the instruction's operations (from the instruction
parser, never substring matching) name findings and locations; the region is the element-wise maximum
of the pseudo masks of the findings, each restricted to the side / zone its location names
(configurable). A finding outside the 8 categories makes the region the full image, and the returned
``RegionChoice.source`` says so: the fallback is always reported, never silent (§11).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from instructx2x.masks.pseudo import PseudoMasks, category_key, resize_mask

log = logging.getLogger(__name__)

# Default laterality/zone settings (mirrors schemas/config/masks.schema.yaml).
DEFAULT_REGION = {
    "restrict_laterality": True,
    "restrict_zone": True,
    "patient_left_on_image": "right",
    "midline": 0.5,
    "zones": {
        "apical": [0.0, 0.35],
        "upper": [0.0, 0.5],
        "middle": [0.25, 0.75],
        "lower": [0.5, 1.0],
        "basal": [0.65, 1.0],
        # compound and named zones of instructions/data/locations.csv
        "upper to middle": [0.0, 0.75],
        "middle to lower": [0.25, 1.0],
        "medial basal": [0.65, 1.0],
        "costophrenic": [0.75, 1.0],
        "retrocardiac": [0.5, 1.0],
        "perihilar": [0.25, 0.75],
    },
}


@dataclass
class RegionChoice:
    """The region an edit may touch and where it came from (reported in every output)."""

    mask: np.ndarray  # bool (H, W)
    source: str  # "user" | "pseudo" | "full_image"
    detail: str
    categories: list = field(default_factory=list)
    fallback: bool = False


# Fallback vocabulary for parsed findings/locations, used only when the instruction package does
# not provide its own helpers. Keys are the parser's normalised finding names (not instruction text).
_FINDING_TO_CATEGORY = {
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "enlarged cardiac silhouette": "Cardiomegaly",
    "consolidation": "Consolidation",
    "edema": "Edema",
    "pulmonary edema": "Edema",
    "vascular congestion": "Edema",
    "lung opacity": "Lung Opacity",
    "opacity": "Lung Opacity",
    "pleural effusion": "Pleural Effusion",
    "effusion": "Pleural Effusion",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
}


_SIDE_WORDS = {"left": "left", "right": "right", "bilateral": "bilateral", "bibasilar": "bilateral", "both": "bilateral"}


_ZONE_WORDS = {
    "apical": "apical", "apex": "apical", "apices": "apical",
    "upper": "upper", "middle": "middle", "mid": "middle", "lower": "lower",
    "basal": "basal", "base": "basal", "bases": "basal", "basilar": "basal", "bibasilar": "basal",
}


def _instructions_helper(*names):
    try:
        from instructx2x.instructions import grammar, vocabulary
    except ImportError:
        return None
    for mod in (vocabulary, grammar):
        for name in names:
            fn = getattr(mod, name, None)
            if callable(fn):
                return fn
    return None


def finding_category(finding) -> str | None:
    """One of the 8 MS-CXR categories for a parsed finding, or None."""
    if not finding:
        return None
    helper = _instructions_helper("finding_category", "mscxr_category", "finding_to_category")
    if helper is not None:
        cat = helper(finding)
        try:
            return category_key(cat) if cat else None
        except KeyError:
            return None
    return _FINDING_TO_CATEGORY.get(" ".join(str(finding).lower().split()))


def location_side_zone(location) -> tuple[str | None, str | None]:
    """(side, zone) of a parsed location: side in left/right/bilateral/None, zone or None."""
    if not location:
        return None, None
    helper = _instructions_helper("location_side_zone", "side_and_zone", "location_to_side_zone")
    if helper is not None:
        side, zone = helper(location)
        return side, zone
    words = str(location).lower().replace("-", " ").split()
    sides = {_SIDE_WORDS[w] for w in words if w in _SIDE_WORDS}
    zones = [_ZONE_WORDS[w] for w in words if w in _ZONE_WORDS]
    side = "bilateral" if ("bilateral" in sides or {"left", "right"} <= sides) else (sides.pop() if sides else None)
    return side, (zones[0] if zones else None)


def parse_operations(instruction: str) -> list[dict]:
    """Operations of an instruction from the instruction grammar (E's ``parse_instruction``)."""
    try:
        from instructx2x.instructions.grammar import parse_instruction
    except ImportError as err:  # the instructions package has not landed
        raise RuntimeError(
            "instructx2x.instructions.grammar.parse_instruction is not available: cannot choose a "
            "pseudo mask by meaning (pass a user mask, or operations)"
        ) from err
    return [operation_dict(op) for op in parse_instruction(instruction)]


def operation_dict(op) -> dict:
    if isinstance(op, dict):
        return dict(op)
    if hasattr(op, "_asdict"):
        return dict(op._asdict())
    if hasattr(op, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(op)
    return {k: getattr(op, k, None) for k in ("op", "finding", "location", "severity", "from_level", "to_level")}


def restrict(mask: np.ndarray, side, zone, settings: dict) -> tuple[np.ndarray, str]:
    """Restrict a bool mask to the side (patient's) and zone named by a location."""
    w = mask.shape[1]
    out = mask.copy()
    notes = []
    if settings.get("restrict_laterality", True) and side in ("left", "right"):
        mid = int(round(settings.get("midline", 0.5) * w))
        left_on_right = settings.get("patient_left_on_image", "right") == "right"
        on_image_right = (side == "left") == left_on_right
        if on_image_right:
            out[:, :mid] = False
        else:
            out[:, mid:] = False
        notes.append(f"{side} (image {'right' if on_image_right else 'left'} of column {mid})")
    zones = settings.get("zones", DEFAULT_REGION["zones"])
    if settings.get("restrict_zone", True) and zone in zones and out.any():
        rows = np.flatnonzero(out.any(axis=1))
        top, bottom = rows[0], rows[-1] + 1
        a, b = zones[zone]
        r0 = top + int(np.floor(a * (bottom - top)))
        r1 = top + int(np.ceil(b * (bottom - top)))
        out[:r0] = False
        out[r1:] = False
        notes.append(f"{zone} rows {r0}-{r1}")
    return out, ", ".join(notes)


def choose_region(operations, shape, pseudo_masks: PseudoMasks | None, user_mask=None, settings=None) -> RegionChoice:
    """The edit region of an instruction: user mask, else union of restricted pseudo masks, else full image."""
    settings = {**DEFAULT_REGION, **(settings or {})}
    if user_mask is not None:
        m = resize_mask(user_mask, shape)
        return RegionChoice(mask=m, source="user", detail=f"user mask ({100 * m.mean():.1f}% of the image)")
    full = np.ones(shape, dtype=bool)
    if pseudo_masks is None:
        return RegionChoice(full, "full_image", "fallback to full image: no pseudo masks given", fallback=True)
    operations = [operation_dict(o) for o in operations]
    if not operations:
        return RegionChoice(full, "full_image", "fallback to full image: instruction has no operation", fallback=True)
    region = np.zeros(shape, dtype=bool)
    cats, parts = [], []
    for op in operations:
        cat = finding_category(op.get("finding"))
        if cat is None:
            return RegionChoice(
                full, "full_image", f"fallback to full image: unknown finding {op.get('finding')!r} (not one of the 8 MS-CXR categories)",
                categories=cats, fallback=True,
            )
        m = pseudo_masks.get(cat, shape)
        if not m.any():
            return RegionChoice(
                full, "full_image", f"fallback to full image: pseudo mask of {cat} is empty", categories=[cat], fallback=True
            )
        side, zone = location_side_zone(op.get("location"))
        m, note = restrict(m, side, zone, settings)
        if not m.any():
            return RegionChoice(
                full, "full_image", f"fallback to full image: {cat} restricted to {note} is empty", categories=[cat], fallback=True
            )
        region |= m
        cats.append(cat)
        parts.append(cat + (f" [{note}]" if note else ""))
    return RegionChoice(region, "pseudo", "pseudo mask: " + " + ".join(parts), categories=cats)


