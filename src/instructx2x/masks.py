"""Pseudo masks (method §7): the anatomical prior of Region-Specific Editing.

Building (rule ``masks``): every MS-CXR box of a PA image is rescaled from its original pixels
(COCO ``x, y, w, h``) to the working resolution, and the boxes of each of the 8 findings are
united into one binary mask. Written as ``pseudo_masks.npz`` (one ``uint8`` array per category,
keyed by the category name, plus ``resolution``), one PNG per category and a figure of all 8.

Choosing (at inference): the instruction's operations (from the instruction parser, never
substring matching) name findings and locations; the region is the element-wise maximum of the
masks of the findings, each restricted to the side / zone its location names (configurable). A
finding outside the 8 categories makes the region the full image, and the returned
``RegionChoice.source`` says so: the fallback is always reported, never silent (§11).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CATEGORIES = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)
BOX_COLUMNS = ("dicom_id", "category_name", "x", "y", "w", "h", "image_width", "image_height")

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


def category_key(name: str) -> str:
    """The canonical category name for a case-insensitive MS-CXR category (data-contract §6.3)."""
    lookup = {c.lower(): c for c in CATEGORIES}
    key = lookup.get(" ".join(str(name).split()).lower())
    if key is None:
        raise KeyError(name)
    return key


# --------------------------------------------------------------------------------------------
# Building the masks
# --------------------------------------------------------------------------------------------


def _check_columns(df: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(columns)}")


def build_pseudo_masks(boxes: pd.DataFrame, pa_dicom_ids, resolution: int, ledger=None, source="boxes"):
    """Union per category of the PA boxes rescaled to ``resolution``; returns (masks, stats).

    ``masks`` maps each of the 8 categories to a ``uint8`` array (0/1) of shape (resolution,
    resolution); a category without any box stays all zero and is counted in ``stats``.
    """
    _check_columns(boxes, BOX_COLUMNS, source)
    masks = {c: np.zeros((resolution, resolution), dtype=np.uint8) for c in CATEGORIES}
    stats = {c: 0 for c in CATEGORIES}
    pa = set(map(str, pa_dicom_ids))
    n_in = len(boxes)
    kept = 0
    for row in boxes.itertuples(index=False):
        item = f"{row.dicom_id}:{row.category_name}"
        if str(row.dicom_id) not in pa:
            if ledger is not None:
                ledger.set_aside("box", item, "not_pa", "image is not a PA view")
            continue
        try:
            cat = category_key(row.category_name)
        except KeyError:
            if ledger is not None:
                ledger.set_aside("box", item, "unknown_category", row.category_name)
            continue
        iw, ih = float(row.image_width), float(row.image_height)
        if not (iw > 0 and ih > 0) or not (row.w > 0 and row.h > 0):
            if ledger is not None:
                ledger.set_aside("box", item, "degenerate_box", f"w={row.w} h={row.h} size={iw}x{ih}")
            continue
        x0 = int(np.floor(row.x * resolution / iw))
        y0 = int(np.floor(row.y * resolution / ih))
        x1 = int(np.ceil((row.x + row.w) * resolution / iw))
        y1 = int(np.ceil((row.y + row.h) * resolution / ih))
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, resolution), min(y1, resolution)
        if x1 <= x0 or y1 <= y0:
            if ledger is not None:
                ledger.set_aside("box", item, "box_outside_image", f"x={row.x} y={row.y} w={row.w} h={row.h}")
            continue
        masks[cat][y0:y1, x0:x1] = 1
        stats[cat] += 1
        kept += 1
    if ledger is not None:
        ledger.count("pa_boxes_in_categories", n_in, kept, "MS-CXR boxes of PA images used for pseudo masks")
    return masks, stats


def save_pseudo_masks(masks: dict, resolution: int, npz_path, png_dir, figure_path) -> list[str]:
    """Write the npz, one PNG per category (``pseudo_mask_<Category>.png``) and the figure."""
    from PIL import Image

    from instructx2x.core.io import atomic_path

    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, resolution=np.int64(resolution), **{c: masks[c] for c in CATEGORIES})
    written = []
    for cat in CATEGORIES:
        path = Path(png_dir) / mask_png_name(cat)
        with atomic_path(path) as tmp:
            Image.fromarray(masks[cat] * 255).save(tmp, format="PNG")
        written.append(str(path))
    plot_pseudo_masks(masks, figure_path)
    return written


def mask_png_name(category: str) -> str:
    return f"pseudo_mask_{category.replace(' ', '_')}.png"


def plot_pseudo_masks(masks: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from instructx2x.core.io import atomic_path

    # constrained layout reserves room for every title (tight_layout let the second row's run under the first)
    fig, axes = plt.subplots(2, 4, figsize=(12, 7.0), layout="constrained")
    for ax, cat in zip(axes.ravel(), CATEGORIES):
        ax.imshow(masks[cat], cmap="gray", vmin=0, vmax=1)
        # two short lines: long category names no longer run into their neighbours' titles
        ax.set_title(f"{cat}\n{100 * masks[cat].mean():.0f}% of the image", fontsize=9)
        ax.axis("off")
    fig.suptitle("Pseudo masks: union of MS-CXR boxes of PA images\n(image orientation: the patient's left is on the right)",
                 fontsize=11)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)


def run_masks(boxes_path, pa_images_path, resolution, npz_path, png_dir, figure_path, ledger_path, counts_path):
    """Rule ``masks``: read the ingest tables, build, save, write the ledger."""
    from instructx2x.core.ledger import Ledger

    boxes = pd.read_parquet(boxes_path)
    pa = pd.read_parquet(pa_images_path)
    _check_columns(pa, ("dicom_id", "is_pa"), pa_images_path)
    pa_ids = pa.loc[pa["is_pa"].astype(bool), "dicom_id"]
    ledger = Ledger("masks")
    masks, stats = build_pseudo_masks(boxes, pa_ids, int(resolution), ledger, source=boxes_path)
    for cat, n in stats.items():
        if n == 0:
            ledger.set_aside("category", cat, "no_pa_boxes", "pseudo mask is empty; edits of it fall back to the full image")
    save_pseudo_masks(masks, int(resolution), npz_path, png_dir, figure_path)
    ledger.write(ledger_path, counts_path)
    log.info("pseudo masks: %s", json.dumps(stats))
    return stats


# --------------------------------------------------------------------------------------------
# Loading and choosing a region for an instruction
# --------------------------------------------------------------------------------------------


@dataclass
class PseudoMasks:
    masks: dict
    resolution: int
    path: str = ""

    @classmethod
    def load(cls, path) -> "PseudoMasks":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"pseudo masks {path} not found: run the `masks` rule (results/masks/pseudo_masks.npz) or pass a user mask"
            )
        with np.load(path) as data:
            missing = [c for c in CATEGORIES if c not in data.files]
            if missing:
                raise ValueError(f"{path}: missing mask array(s) {missing}; expected the 8 MS-CXR categories")
            masks = {c: data[c].astype(np.uint8) for c in CATEGORIES}
            res = int(data["resolution"]) if "resolution" in data.files else masks[CATEGORIES[0]].shape[0]
        return cls(masks=masks, resolution=res, path=str(path))

    def get(self, category: str, shape) -> np.ndarray:
        """The mask of ``category`` resized (nearest) to ``shape`` (H, W), as bool."""
        return resize_mask(self.masks[category], shape)


def resize_mask(mask: np.ndarray, shape) -> np.ndarray:
    mask = np.asarray(mask) > 0
    h, w = shape
    if mask.shape == (h, w):
        return mask.copy()
    rows = (np.arange(h) * mask.shape[0] // h).clip(0, mask.shape[0] - 1)
    cols = (np.arange(w) * mask.shape[1] // w).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


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
    h, w = mask.shape
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
