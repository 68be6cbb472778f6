"""Latent cache: the frozen VAE run once over (augmented copies of) the train/val pairs.

At 128 px on a CPU the VAE costs more than the tiny UNet per step, and it is frozen, so its output
is a rule output. Augmentation happens in pixel space, so each pair is cached in ``copies``
seeded augmented versions (copy 0 unaugmented); a flipped copy stores the left/right-swapped
instruction. Per copy: the target's posterior mean and std (a fresh sample is drawn at every
step, as InstructPix2Pix does) and the conditioning image's mode latent (as the pipeline uses).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .data import augment, load_image, read_instructions

log = logging.getLogger(__name__)


@torch.no_grad()
def cache_latents(instructions_path, model_dir, out_path, splits, copies: int, resolution: int, seed: int,
                  aug: dict, batch: int = 16, ledger=None) -> dict:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", local_files_only=True).eval()
    df = read_instructions(instructions_path, splits)
    rng = np.random.default_rng(seed)
    rows, past_b, cur_b = [], [], []
    for r in df.itertuples(index=False):
        try:
            past, cur = load_image(r.past_image, resolution), load_image(r.current_image, resolution)
        except (OSError, ValueError) as e:
            if ledger is not None:
                ledger.set_aside("pair", r.pair_id, "unreadable_image", str(e)[:200])
            continue
        for k in range(copies):
            if k == 0:
                p, c, text, flip = past, cur, r.instruction, False
            else:
                p, c, text, flip = augment(past, cur, r.instruction, rng, aug["rotation_deg"], aug["crop_scale"],
                                           aug["flip_p"])
            rows.append({"pair_id": r.pair_id, "split": r.split, "copy": k, "flip": flip, "instruction": text})
            past_b.append(p)
            cur_b.append(c)
    if not rows:
        raise ValueError(f"{instructions_path}: no readable pairs in splits {list(splits)}")
    means, stds, conds = [], [], []
    for i in range(0, len(rows), batch):
        post = vae.encode(torch.stack(cur_b[i:i + batch])).latent_dist
        means.append(post.mean)
        stds.append(post.std)
        conds.append(vae.encode(torch.stack(past_b[i:i + batch])).latent_dist.mode())
    out = {"rows": rows, "target_mean": torch.cat(means), "target_std": torch.cat(stds),
           "cond": torch.cat(conds), "scaling_factor": float(vae.config.scaling_factor)}
    torch.save(out, out_path)
    if ledger is not None:
        ledger.count("cache_latents", len(df), len({r["pair_id"] for r in rows}), f"{copies} copies per pair")
    log.info("cached %d latents (%d pairs x %d copies)", len(rows), len(df), copies)
    return {"latents": len(rows), "pairs": len(df)}
