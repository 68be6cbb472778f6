"""Build the InstructPix2Pix components: ``preset: tiny`` from config, or ``pretrained: DIR``.

* UNet2DConditionModel with 8 input channels (4 noisy latent + 4 image-condition latent) and 4
  output channels. A 4-channel pretrained UNet (Stable Diffusion) is expanded: the extra 4 input
  channels of ``conv_in`` are zero-initialised, so the expanded UNet starts as the original one.
* AutoencoderKL, frozen; its ``scaling_factor`` comes from its config (0.18215 for SD).
* CLIPTextModel + CLIPTokenizer, frozen.
* DDPMScheduler: 1000 steps, scaled_linear, beta 0.00085-0.012.
Nothing is downloaded: ``pretrained`` is a local directory and is read with ``local_files_only``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass
class Components:
    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    scheduler: object


def make_scheduler(prediction_type: str = "epsilon", timestep_spacing: str = "leading"):
    """SD's DDPM schedule; ``timestep_spacing`` (exported in the scheduler config, read by every DDIM
    sampler made from it) picks the sampling steps: ``leading`` (SD's: 5 steps are t = 800..0) or
    ``trailing`` (t = 999..199: the first step starts from pure noise, as the model was trained)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, prediction_type=prediction_type,
                         timestep_spacing=timestep_spacing)


def tiny_vae(cfg: dict):
    """A random-init AutoencoderKL; its posterior starts narrow (log-variance bias -8, std ~0.02).

    With the usual init (log-variance ~0, std ~1) the decoder is trained on latents drowned in the
    sampling noise until the encoder has learnt to shrink it, and a few hundred CPU steps are not
    enough for that: the reconstruction stays blurred (seen in exploratory runs of issue 15; no
    benchmark records the comparison). SD's trained VAE has a narrow posterior too; the KL term
    still applies."""
    import torch
    from diffusers import AutoencoderKL

    ch = tuple(cfg["vae_channels"])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.get("vae_latent_channels", 4),
        down_block_types=("DownEncoderBlock2D",) * len(ch), up_block_types=("UpDecoderBlock2D",) * len(ch),
        block_out_channels=ch, layers_per_block=1, norm_num_groups=cfg["norm_groups"],
        sample_size=cfg["sample_size"], scaling_factor=1.0,
    )
    lc = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.bias[lc:] = cfg.get("vae_logvar_init", -8.0)
    return vae


def tiny_unet(cfg: dict):
    from diffusers import UNet2DConditionModel

    ch = tuple(cfg["unet_channels"])
    n = len(ch)
    lc = cfg.get("vae_latent_channels", 4)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if cfg["unet_attention"]:  # cross-attention on the deepest level only (cheapest)
        down[-1] = "CrossAttnDownBlock2D"
        up[0] = "CrossAttnUpBlock2D"
    return UNet2DConditionModel(
        sample_size=cfg["sample_size"] // 2 ** (len(cfg["vae_channels"]) - 1),
        in_channels=2 * lc, out_channels=lc, block_out_channels=ch, layers_per_block=cfg["unet_layers_per_block"],
        down_block_types=tuple(down), up_block_types=tuple(up),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=cfg["text_hidden_size"], attention_head_dim=cfg["attention_head_dim"],
        norm_num_groups=cfg["norm_groups"],
    )


def tiny_text_encoder(cfg: dict, vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=cfg["text_hidden_size"], intermediate_size=2 * cfg["text_hidden_size"],
        num_hidden_layers=cfg["text_layers"], num_attention_heads=cfg["text_heads"],
        max_position_embeddings=cfg["max_length"], bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))


def build_tiny(cfg: dict, words, workdir, seed: int) -> Components:
    """Tiny components for CPUs and tests (random init; the VAE needs its own pre-training)."""
    from .tokenizer import build_tokenizer

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words, cfg["max_length"], workdir)
    vae = tiny_vae(cfg)
    text_encoder = tiny_text_encoder(cfg, len(tokenizer))
    unet = tiny_unet(cfg)
    return Components(unet, vae, text_encoder, tokenizer, make_scheduler())


def expand_unet_input(unet, in_channels: int = 8):
    """A UNet with ``in_channels`` inputs; the added channels' conv_in weights are zero."""
    if unet.config.in_channels == in_channels:
        return unet
    old = unet.conv_in
    new = torch.nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def load_pretrained(directory, low_cpu_mem_usage: bool = True) -> Components:
    """Components of a local diffusers-format (InstructPix2Pix or SD) directory, offline.

    ``low_cpu_mem_usage`` (needs ``accelerate``, pinned in the lock) builds each model on the meta
    device and fills it from the checkpoint, instead of initialising random weights first: the
    load's peak RAM is about the weights once, not twice (measured: ``benchmarks/training_sd15.py``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from instructx2x.core.errors import InputError, MissingInput

    d = Path(directory)
    if not d.is_dir():
        raise MissingInput(f"model.pretrained {d}: no such folder; expected a local diffusers InstructPix2Pix directory")
    if not (d / "model_index.json").exists():
        raise MissingInput(f"{d}: not a diffusers pipeline directory (no model_index.json)")
    kw = dict(local_files_only=True)
    try:
        low = dict(kw, low_cpu_mem_usage=low_cpu_mem_usage)
        unet = expand_unet_input(UNet2DConditionModel.from_pretrained(d, subfolder="unet", **low))
        vae = AutoencoderKL.from_pretrained(d, subfolder="vae", **low)
        # transformers >= 5 always builds on the meta device (its low_cpu_mem_usage flag is gone)
        text_encoder = CLIPTextModel.from_pretrained(d, subfolder="text_encoder", **kw)
        tokenizer = CLIPTokenizer.from_pretrained(d, subfolder="tokenizer", **kw)
    except (OSError, ValueError, KeyError) as exc:  # missing/corrupt weights or configs in the folder
        reason = " ".join(str(exc).split())[:300]
        raise InputError(f"{d}: cannot load the pretrained model ({type(exc).__name__}: {reason}); expected the "
                         "unet/, vae/, text_encoder/ and tokenizer/ folders of a diffusers InstructPix2Pix") from None
    return Components(unet, vae, text_encoder, tokenizer, make_scheduler())


EDITOR_CONFIG = "editor_config.json"
PREDICTION_BASES = ("none", "image")  # training.prediction_base


def read_prediction_base(model_dir) -> str:
    """The prediction base an exported pipeline was trained with ("none" without editor_config.json)."""
    import json

    path = Path(model_dir) / EDITOR_CONFIG
    base = json.loads(path.read_text()).get("prediction_base", "none") if path.exists() else "none"
    if base not in PREDICTION_BASES:
        raise ValueError(f"{path}: prediction_base {base!r}, expected one of {PREDICTION_BASES}")
    return base


def save_pipeline(c: Components, out_dir, prediction_base: str = "none") -> Path:
    """Save as a diffusers directory loadable by ``StableDiffusionInstructPix2PixPipeline``.

    ``prediction_base`` "image" (the UNet predicts the clean latent's change from the input image's
    latent, training.prediction_base) is written to ``editor_config.json``, which our pipeline reads;
    diffusers' own pipeline does not know it and would need that latent added back."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, scheduler=c.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
    if prediction_base != "none":
        import json

        (Path(out_dir) / EDITOR_CONFIG).write_text(json.dumps({"prediction_base": prediction_base}, indent=1) + "\n")
    return Path(out_dir)
