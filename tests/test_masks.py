"""Pseudo masks from MS-CXR boxes (method §7) and choosing a region for an instruction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from instructx2x.core.ledger import read_ledger
from instructx2x.masks import (
    CATEGORIES,
    PseudoMasks,
    build_pseudo_masks,
    choose_region,
    location_side_zone,
    mask_png_name,
    run_masks,
)


def _boxes():
    rows = [
        # dicom, category, x, y, w, h, W, H
        ("pa1", "Pleural Effusion", 0, 500, 250, 250, 1000, 1000),  # -> rows 32-48, cols 0-16 at 64
        ("pa2", "pleural effusion", 750, 500, 250, 250, 1000, 1000),  # other side, lower case
        ("pa2", "Cardiomegaly", 100, 100, 100, 50, 400, 200),  # non-square original: x*64/400, y*64/200
        ("ap1", "Pneumothorax", 0, 0, 1000, 1000, 1000, 1000),  # not PA: ignored
        ("pa1", "Nodule", 0, 0, 10, 10, 1000, 1000),  # not one of the 8
    ]
    return pd.DataFrame(rows, columns=["dicom_id", "category_name", "x", "y", "w", "h", "image_width", "image_height"])


def test_boxes_rescaled_and_united_per_category_pa_only():
    masks, stats = build_pseudo_masks(_boxes(), ["pa1", "pa2"], 64)
    eff = masks["Pleural Effusion"]
    assert eff[32:48, 0:16].all() and eff[32:48, 48:64].all()
    assert eff.sum() == 2 * 16 * 16
    card = masks["Cardiomegaly"]
    assert card[32:48, 16:32].all() and card.sum() == 16 * 16
    assert masks["Pneumothorax"].sum() == 0  # the AP image's box is not used
    assert stats["Pleural Effusion"] == 2 and stats["Pneumothorax"] == 0


def test_malformed_box_table_fails_naming_column():
    with pytest.raises(ValueError, match="image_width"):
        build_pseudo_masks(_boxes().drop(columns=["image_width"]), ["pa1"], 64, source="boxes.parquet")


def test_run_masks_writes_arrays_pngs_figure_and_ledger(tmp_path):
    boxes_path, pa_path = tmp_path / "boxes.parquet", tmp_path / "pa.parquet"
    _boxes().to_parquet(boxes_path)
    pd.DataFrame({"dicom_id": ["pa1", "pa2", "ap1"], "is_pa": [True, True, False]}).to_parquet(pa_path)
    out = tmp_path / "masks"
    run_masks(boxes_path, pa_path, 64, out / "pseudo_masks.npz", out, out / "pseudo_masks.png",
              tmp_path / "ledger.tsv", tmp_path / "counts.tsv")
    pm = PseudoMasks.load(out / "pseudo_masks.npz")
    assert pm.resolution == 64 and set(pm.masks) == set(CATEGORIES)
    png = np.asarray(Image.open(out / mask_png_name("Pleural Effusion")))
    assert np.array_equal(png > 0, pm.masks["Pleural Effusion"] > 0)
    assert (out / "pseudo_masks.png").stat().st_size > 0
    reasons = {(r["item_id"], r["reason"]) for r in read_ledger(tmp_path / "ledger.tsv")}
    assert ("ap1:Pneumothorax", "not_pa") in reasons
    assert ("pa1:Nodule", "unknown_category") in reasons
    assert ("Pneumothorax", "no_pa_boxes") in reasons


def test_missing_mask_file_is_an_error_not_a_full_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="masks"):
        PseudoMasks.load(tmp_path / "nope.npz")


def _pm():
    masks, _ = build_pseudo_masks(_boxes(), ["pa1", "pa2"], 64)
    masks["Lung Opacity"][8:56, 4:60] = 1
    return PseudoMasks(masks=masks, resolution=64)


def test_side_restriction_follows_pa_orientation():
    pm = _pm()
    left = choose_region([{"finding": "pleural effusion", "location": "left"}], (64, 64), pm)
    assert left.source == "pseudo" and left.mask[:, 32:].any() and not left.mask[:, :32].any()
    right = choose_region([{"finding": "pleural effusion", "location": "right"}], (64, 64), pm)
    assert right.mask[:, :32].any() and not right.mask[:, 32:].any()
    both = choose_region([{"finding": "pleural effusion", "location": "bilateral"}], (64, 64), pm)
    assert both.mask[:, :32].any() and both.mask[:, 32:].any()
    flipped = choose_region([{"finding": "pleural effusion", "location": "left"}], (64, 64), pm,
                            settings={"patient_left_on_image": "left"})
    assert flipped.mask[:, :32].any() and not flipped.mask[:, 32:].any()
    off = choose_region([{"finding": "pleural effusion", "location": "left"}], (64, 64), pm,
                        settings={"restrict_laterality": False})
    assert off.mask[:, :32].any() and off.mask[:, 32:].any()


def test_zone_restriction_and_union_of_findings():
    pm = _pm()
    apical = choose_region([{"finding": "lung opacity", "location": "right apical"}], (64, 64), pm)
    rows = np.flatnonzero(apical.mask.any(axis=1))
    assert rows.min() == 8 and rows.max() < 32
    two = choose_region([{"finding": "pleural effusion", "location": "left"}, {"finding": "cardiomegaly"}], (64, 64), pm)
    assert two.categories == ["Pleural Effusion", "Cardiomegaly"]
    assert two.mask[32:48, 16:32].all() and two.mask[32:48, 48:64].all()
    assert location_side_zone("left lung base") == ("left", "basal")


def test_unknown_or_empty_finding_falls_back_to_full_image_visibly():
    pm = _pm()
    unknown = choose_region([{"finding": "hernia", "location": "left"}], (64, 64), pm)
    assert unknown.mask.all() and unknown.fallback and unknown.source == "full_image" and "hernia" in unknown.detail
    empty = choose_region([{"finding": "pneumothorax", "location": None}], (64, 64), pm)
    assert empty.mask.all() and empty.fallback and "empty" in empty.detail
    none = choose_region([{"finding": "cardiomegaly"}], (32, 32), None)
    assert none.fallback and "no pseudo masks" in none.detail


def test_masks_resized_to_image_resolution():
    region = choose_region([{"finding": "cardiomegaly"}], (128, 128), _pm())
    assert region.mask.shape == (128, 128) and region.mask.sum() == 4 * 16 * 16
