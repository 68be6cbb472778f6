"""The registration QA montage: a PNG grid of kept and rejected pairs (past | aligned current | checkerboard)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from instructx2x.core.images import read_gray
from instructx2x.core.io import atomic_path
from instructx2x.core.paths import read_parquet


def _checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy * tiles // h) + (xx * tiles // w)) % 2 == 0
    return np.where(mask, a, b)


def montage(registration_path, fates_path, out_path, *, per_group: int = 4) -> None:
    """Rows: kept pairs then rejected pairs (registered ones); columns: past, aligned current, checkerboard."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    reg = read_parquet(registration_path).set_index("pair_id")  # image paths resolved (core.paths)
    fates = pd.read_parquet(fates_path)
    registered = fates[(fates["stage"] == "registration_gate")]
    kept = registered[registered["fate"] == "kept"].head(per_group)
    rejected = registered[registered["fate"] != "kept"].drop_duplicates("fate").head(per_group)
    rejected = pd.concat([rejected, registered[(registered["fate"] != "kept") & ~registered["pair_id"].isin(rejected["pair_id"])]]).head(per_group)
    chosen = pd.concat([kept, rejected])
    n = max(len(chosen), 1)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, f in enumerate(chosen.itertuples(index=False)):
        r = reg.loc[f.pair_id]
        past = read_gray(r["past_path"], check_content=False)
        cur = read_gray(r["aligned_current_path"], check_content=False)
        for j, (img, title) in enumerate(((past, "past"), (cur, "current aligned"), (_checkerboard(past, cur), "checkerboard"))):
            axes[i, j].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[i, j].set_title(title if j else f"{f.fate} | {f.pair_id}\nMI {r['mi']:.2f} ncc {r['ncc']:.2f} str {r['structure_ncc']:.2f}", fontsize=6)
    if len(chosen) == 0:
        axes[0, 1].text(0.5, 0.5, "no registered pairs", ha="center")
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
