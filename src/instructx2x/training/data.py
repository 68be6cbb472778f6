"""Pairs of aligned images with their instruction, and the augmentation of method §8.

Augmentation (same transform on past and current): rotation by an angle uniform in ±2°, a random
crop (side ``crop_scale``..1 of the image) resized back, and a horizontal flip with probability
``flip_p`` that ALWAYS swaps left/right in the instruction (``instructions.grammar.flip_instruction``):
a flipped image never keeps an instruction naming the wrong side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from instructx2x.core.errors import InputError
from instructx2x.core.images import read_gray
from instructx2x.core.io import read_input_table

REQUIRED = ("pair_id", "split", "past_image", "current_image", "instruction")


def read_instructions(path, splits) -> pd.DataFrame:
    df = read_input_table(path, REQUIRED, "an instructions table (instructions.parquet)")
    for c in REQUIRED:
        if df[c].isna().any():
            bad = df.loc[df[c].isna(), "pair_id"].head(3).tolist()
            raise InputError(f"{path}: column {c!r} has nulls (pairs {bad}); expected a value in every row")
    return df[df["split"].isin(list(splits))].sort_values("pair_id").reset_index(drop=True)


def load_image(path, size: int) -> torch.Tensor:
    """Radiograph -> 3x size x size float tensor in [-1, 1] (gray replicated to 3 channels)."""
    im = Image.fromarray(read_gray(path, check_content=False))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0)
    return x.unsqueeze(0).repeat(3, 1, 1)


def _affine(x: torch.Tensor, angle_deg: float, scale: float, cx: float, cy: float, flip: bool) -> torch.Tensor:
    """Rotate by angle, crop a window of relative side ``scale`` centred at (cx, cy) in [-1,1], flip."""
    a = np.deg2rad(angle_deg)
    cos, sin = np.cos(a) * scale, np.sin(a) * scale
    sx = -1.0 if flip else 1.0
    theta = torch.tensor([[cos * sx, -sin, cx], [sin * sx, cos, cy]], dtype=x.dtype).unsqueeze(0)
    grid = F.affine_grid(theta, list(x.unsqueeze(0).shape), align_corners=False)
    return F.grid_sample(x.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def augment(past: torch.Tensor, current: torch.Tensor, instruction: str, rng: np.random.Generator,
            rotation_deg: float = 2.0, crop_scale: float = 0.9, flip_p: float = 0.5):
    """The same random rotation/crop/flip on both images; a flip swaps left/right in the text."""
    from instructx2x.instructions.grammar import flip_instruction

    angle = rng.uniform(-rotation_deg, rotation_deg)
    scale = rng.uniform(crop_scale, 1.0)
    cx, cy = rng.uniform(-(1 - scale), 1 - scale, size=2)
    flip = bool(rng.random() < flip_p)
    out = [_affine(x, angle, scale, cx, cy, flip) for x in (past, current)]
    text = flip_instruction(instruction) if flip else instruction
    return out[0], out[1], text, flip
