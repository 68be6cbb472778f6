"""Stage ``masks`` (``rules/masks.smk``, method §7): the anatomical prior of Region-Specific Editing.

- ``pseudo``: the pseudo masks, built from the MS-CXR boxes (the rule) and loaded for inference;
- ``region``: the region an edit may touch, chosen from the instruction's operations (inference,
  ``edit`` and ``serve``), with its source always reported.

The rule ``masks`` runs ``pseudo`` only (its code version), so an edit of the region choice re-runs
inference and not the masks.
"""

from instructx2x.masks.pseudo import (
    BOX_COLUMNS,
    CATEGORIES,
    PseudoMasks,
    build_pseudo_masks,
    mask_png_name,
    plot_pseudo_masks,
    resize_mask,
    run_masks,
    save_pseudo_masks,
)
from instructx2x.masks.region import (
    DEFAULT_REGION,
    RegionChoice,
    choose_region,
    finding_category,
    location_side_zone,
    operation_dict,
    parse_operations,
    restrict,
)

__all__ = [
    "BOX_COLUMNS", "CATEGORIES", "DEFAULT_REGION", "PseudoMasks", "RegionChoice", "build_pseudo_masks",
    "choose_region", "finding_category", "location_side_zone", "mask_png_name", "operation_dict",
    "parse_operations", "plot_pseudo_masks", "resize_mask", "restrict", "run_masks", "save_pseudo_masks",
]
