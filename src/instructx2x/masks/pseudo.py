"""Pseudo masks (method §7), building and loading: every MS-CXR box of a PA image is rescaled from its
original pixels (COCO ``x, y, w, h``) to the working resolution, and the boxes of each of the 8 findings
are united into one binary mask (rule ``masks``). Written as ``pseudo_masks.npz`` (one ``uint8`` array
per category, keyed by the category name, plus ``resolution``), one PNG per category and a figure of
all 8; ``PseudoMasks.load`` reads them back for inference.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
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


def category_key(name: str) -> str:
    """The canonical category name for a case-insensitive MS-CXR category (data-contract §6.3)."""
    lookup = {c.lower(): c for c in CATEGORIES}
    key = lookup.get(" ".join(str(name).split()).lower())
    if key is None:
        raise KeyError(name)
    return key


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


