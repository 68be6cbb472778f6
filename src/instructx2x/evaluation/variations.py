"""The paper's Figure 4: severity and laterality variations of one input, edited with RSE.

The first pair (by pair id) edited successfully in mode ``rse`` is edited again with instructions
that vary only the severity (small / moderate / large left pleural effusion) and the side (right,
bilateral), with the pair's seed, the configured sampler settings and the pseudo masks. The figure
shows, per instruction: the input, the edit and the guidance-map overlay (RSE's region).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.paths import read_parquet

log = logging.getLogger(__name__)
VARIANTS = (
    ("severity", "Add a small left pleural effusion"),
    ("severity", "Add a moderate left pleural effusion"),
    ("severity", "Add a large left pleural effusion"),
    ("laterality", "Add a moderate right pleural effusion"),
    ("laterality", "Add a moderate bilateral pleural effusion"),
)


def variations_figure(records_path, model_dir, masks_path, out_png, *, rse_cfg: dict, masks_cfg: dict, seed: int,
                      variants=VARIANTS, device: str = "cpu") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from instructx2x.inference.shards import pair_seed
    from instructx2x.core.io import atomic_path
    from instructx2x.masks import PseudoMasks
    from instructx2x.core.images import read_gray
    from instructx2x.inference.rse import RegionSpecificEditPipeline

    torch.set_num_threads(1)
    rec = read_parquet(records_path)  # file paths resolved (core.paths)
    ok = rec[(rec["mode"] == "rse") & (rec["status"] == "ok")].sort_values("pair_id", kind="stable")
    if ok.empty:
        raise ValueError(f"{records_path}: no pair edited successfully in mode rse; nothing to vary")
    row = ok.iloc[0]
    image = read_gray(row["input_path"])
    region = {k: masks_cfg[k] for k in ("restrict_laterality", "restrict_zone", "patient_left_on_image", "midline", "zones")
              if k in masks_cfg}
    pipe = RegionSpecificEditPipeline.from_pretrained(model_dir, pseudo_masks=PseudoMasks.load(masks_path),
                                                      region_settings=region, device=device)
    kwargs = {k: rse_cfg[k] for k in ("steps", "image_guidance_scale", "guidance_scale", "tau", "t_rel", "decode")
              if k in rse_cfg}
    s = pair_seed(str(row["pair_id"]), seed, rse_cfg.get("seed_offset", 0))
    fig, axes = plt.subplots(len(variants), 3, figsize=(6.6, 2.2 * len(variants)), squeeze=False)
    details = []
    for k, (kind, text) in enumerate(variants):
        out = pipe(image, text, seed=s, rse=True, **kwargs)
        details.append({"kind": kind, "instruction": text, "mask_source": out.mask_source, "mask_detail": out.mask_detail,
                        "fallback": bool(out.fallback)})
        for j, (arr, title) in enumerate(((image, "input"), (out.edited, "RSE edit"), (out.overlay, "guidance overlay"))):
            ax = axes[k, j]
            ax.imshow(arr, cmap="gray" if np.ndim(arr) == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{kind}\n{text.replace('Add a ', '')}", fontsize=7)
            if k == 0:
                ax.set_title(title, fontsize=8)
    fig.suptitle(f"Variations of pair {row['pair_id']} (seed {s})", fontsize=8)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    log.info("variations of %s: %s", row["pair_id"], details)
    return {"pair_id": str(row["pair_id"]), "variants": details}
