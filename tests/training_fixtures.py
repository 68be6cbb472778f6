"""Small real inputs for the model/training tests: PNG pairs and an instructions.parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from pathlib import Path

from instructx2x.core.config import load_config


def make_pairs(tmp_path, n: int = 12, size: int = 32, seed: int = 0) -> str:
    """n pairs: past = smooth background; current = past plus a bright blob on the instructed side
    (patient's left = image right). Splits: last 2 val."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rows = []
    d = tmp_path / "img"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = 90 + 40 * np.sin(6 * xx + rng.uniform(0, 6)) * np.cos(5 * yy) + rng.normal(0, 3, (size, size))
        side = "left" if i % 2 == 0 else "right"
        cx = 0.72 if side == "left" else 0.28
        blob = 110 * np.exp(-(((xx - cx) ** 2 + (yy - 0.6) ** 2) / 0.015))
        past, cur = base, base + blob
        pp, cp = d / f"p{i}_past.png", d / f"p{i}_cur.png"
        Image.fromarray(np.clip(past, 0, 255).astype(np.uint8)).save(pp)
        Image.fromarray(np.clip(cur, 0, 255).astype(np.uint8)).save(cp)
        rows.append({"pair_id": f"{1000 + i}_{i}", "split": "val" if i >= n - 2 else "train", "past_image": str(pp),
                     "current_image": str(cp), "instruction": f"add {side} pleural effusion"})
    path = tmp_path / "instructions.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return str(path)


def tiny_config(**training) -> dict:
    cfg = load_config(Path(__file__).resolve().parents[1] / "config.yaml", {"model": {"tiny": {
        "vae_channels": [8, 16, 16, 16], "unet_channels": [16, 32], "text_hidden_size": 16, "attention_head_dim": 4,
        "norm_groups": 4, "vae_steps": 20, "vae_batch_size": 4, "max_length": 16, "vae_latent_channels": 4,
        "text_grounding_steps": 0}},
        "training": {"steps": 4, "batch_size": 4, "gradient_accumulation": 1, "latent_copies": 2,
                     "checkpoint_every": 2, "keep_checkpoints": 2, "ema_decay": 0.9, **training}})
    return cfg
