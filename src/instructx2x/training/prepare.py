"""Initial components: ``preset: tiny`` (with the tiny VAE's reconstruction pre-training) or a
local pretrained directory; saved as a diffusers directory (``model/init``) for the next rules.

A tiny VAE has no pretrained weights, so it is trained here for ``vae_steps`` steps on the train
images (MSE reconstruction + ``vae_kl_weight`` KL, as the KL-regularised autoencoder of latent
diffusion, without the adversarial/perceptual terms). Its ``scaling_factor`` is then set to
1/std of the train latents, the rule by which SD's 0.18215 was chosen. A pretrained VAE is
kept as it is (frozen) with the scaling factor of its config. With ``text_grounding_steps`` the
tiny random-init text encoder is pre-trained on the train split's instructions first
(``text_grounding.py``); a pretrained text encoder is never changed.
"""

from __future__ import annotations

import logging
import tempfile
import time

from pathlib import Path

import numpy as np
import torch

from ..core.io import write_json

from ..model.build import build_tiny, load_pretrained, save_pipeline
from ..model.tokenizer import check_length, instruction_words
from .data import augment, load_image, read_instructions

log = logging.getLogger(__name__)


def pretrain_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, kl_weight: float, seed: int,
                 rec_loss: str = "mse"):
    """Reconstruction pre-training of a (tiny) AutoencoderKL on ``images`` (N,3,H,W in [-1,1])."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr)
    vae.train()
    history = []
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=g)
        x = images[idx]
        x = torch.stack([augment(a, a, "", rng, flip_p=0.5)[0] for a in x])
        post = vae.encode(x).latent_dist
        z = post.sample(generator=g)
        rec = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(rec, x) if rec_loss == "mse" else (rec - x).abs().mean()
        kl = post.kl().mean() / z[0].numel()
        loss = mse + kl_weight * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(mse.item())
        if step % 25 == 0 or step == steps - 1:
            log.info("vae step %d mse %.4f kl %.3f", step, mse.item(), kl.item())
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(images[i:i + 32]).latent_dist.mode() for i in range(0, len(images), 32)])
    factor = float(1.0 / lat.std())
    vae.register_to_config(scaling_factor=factor)
    log.info("vae scaling_factor = 1/std(latents) = %.5f", factor)
    return history


@torch.no_grad()
def reconstruction_mae(vae, images: torch.Tensor) -> float:
    """Mean absolute error of decode(encode(x).mode) in grey levels (0-255), as the edit pipeline decodes."""
    vae.eval()
    err = [((vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1) - x).abs() * 127.5).mean(dim=(1, 2, 3))
           for x in images.split(16)]
    return float(torch.cat(err).mean())


def prepare(instructions_path, out_dir, model_cfg: dict, seed: int, resolution: int) -> dict:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    df = read_instructions(instructions_path, ["train", "val", "test", "holdout"])
    if model_cfg.get("pretrained"):
        comps = load_pretrained(model_cfg["pretrained"])
        info = {"source": "pretrained", "dir": str(model_cfg["pretrained"])}
    else:
        cfg = dict(model_cfg["tiny"], sample_size=resolution)
        with tempfile.TemporaryDirectory() as tmp:
            comps = build_tiny(cfg, instruction_words(df["instruction"]), tmp, seed)
        train = df[df["split"] == "train"]
        paths = sorted(set(train["past_image"]) | set(train["current_image"]))
        if not paths:
            raise ValueError(f"{instructions_path}: no train pairs to pre-train the tiny VAE on")
        images = torch.stack([load_image(p, resolution) for p in paths])
        t0 = time.time()
        hist = pretrain_vae(comps.vae, images, cfg["vae_steps"], cfg["vae_batch_size"], cfg["vae_lr"],
                            cfg["vae_kl_weight"], seed, rec_loss=cfg["vae_rec_loss"])
        info = {"source": "tiny", "vae_images": len(paths), "vae_steps": int(cfg["vae_steps"]),
                "vae_first_loss": hist[0], "vae_last_loss": hist[-1], "vae_seconds": round(time.time() - t0, 1)}
        val = df[df["split"] == "val"]
        vpaths = sorted(set(val["past_image"]) | set(val["current_image"]))[:64]
        if vpaths:  # held-out images (val split): what the editor's output can be no closer than
            info["vae_val_images"] = len(vpaths)
            info["vae_val_mae_grey"] = round(reconstruction_mae(comps.vae, torch.stack([load_image(p, resolution)
                                                                                       for p in vpaths])), 3)
        if cfg.get("text_grounding_steps", 0) > 0:  # tiny text encoder: bind words to their operation
            from .text_grounding import pretrain_text_encoder

            t0 = time.time()
            grounding = pretrain_text_encoder(comps.text_encoder, comps.tokenizer, train["instruction"],
                                              cfg["text_grounding_steps"], cfg["text_grounding_lr"], seed,
                                              eval_texts=val["instruction"])
            info["text_grounding"] = dict(grounding, seconds=round(time.time() - t0, 1))
    check_length(comps.tokenizer, df["instruction"].unique())  # over-long instructions: an error now, never cut
    for m in (comps.vae, comps.text_encoder):
        m.requires_grad_(False)
    save_pipeline(comps, out_dir)
    info["scaling_factor"] = float(comps.vae.config.scaling_factor)
    write_json(info, Path(out_dir) / "prepare_report.json")
    log.info("prepared %s", info)
    return info
