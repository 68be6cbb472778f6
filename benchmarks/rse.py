"""Benchmark: cost of Region-Specific Editing against plain editing, and plain editing against diffusers.

Same components in one run (a randomly initialised InstructPix2Pix-shaped pipeline, built offline):
  - diffusers' ``StableDiffusionInstructPix2PixPipeline`` (DDIM, same steps and scales), the baseline;
  - ours, wo-RSE (``RegionSpecificEditPipeline(rse=False)``): the same sampler editing globally;
  - ours, RSE: relevance map + masking + re-noising + pixel composite.
Goals (issue 7): RSE <= 1.03x wo-RSE at equal steps; wo-RSE <= 1.05x diffusers.
Runs are interleaved and the median of ``--repeats`` is reported, in wall time and in process CPU
time (less disturbed by other jobs on a shared machine; the ratios use CPU time). Appends/updates a section of
benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/rse.py [--size 128] [--steps 20] [--repeats 5] [--threads 2] [--preset small]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/helpers: the tiny pipeline builder

REPO = Path(__file__).resolve().parents[1]
SECTION = "## RSE: Region-Specific Editing vs plain editing vs diffusers"


def build_small(out_dir: Path) -> Path:
    """A UNet/VAE bigger than the test one (3 levels), so the UNet dominates as in the real model."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from helpers.tiny_pipeline import write_clip_tokenizer_files

    tok = write_clip_tokenizer_files(out_dir / "tok", ("add", "left", "pleural", "effusion"))
    tokenizer = CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt"), model_max_length=32)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(64, 128, 128), layers_per_block=1, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=32))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False)
    StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(out_dir / "model")
    return out_dir / "model"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", choices=["tiny", "small"], default="small")
    args = ap.parse_args(argv)

    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline
    from diffusers.utils import logging as dlogging
    from PIL import Image

    from instructx2x.masks import CATEGORIES, PseudoMasks
    from instructx2x.inference.rse import RegionSpecificEditPipeline
    from helpers.tiny_pipeline import build_tiny_pipeline

    dlogging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rse_bench_"))
    model = build_small(tmp) if args.preset == "small" else build_tiny_pipeline(tmp / "model")

    n = args.size
    yy, xx = np.mgrid[0:n, 0:n]
    image = ((np.sin(xx / 7.0) + np.cos(yy / 9.0) + 2) * 60).astype(np.uint8)
    masks = {c: np.zeros((n, n), np.uint8) for c in CATEGORIES}
    masks["Pleural Effusion"][n // 2 : n - 4, 4 : n - 4] = 1
    ops = [{"op": "add", "finding": "pleural effusion", "location": "left"}]
    instruction = "add left pleural effusion"

    ours = RegionSpecificEditPipeline.from_pretrained(model, pseudo_masks=PseudoMasks(masks, n))
    ref = StableDiffusionInstructPix2PixPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    ref.scheduler = DDIMScheduler.from_config(ref.scheduler.config)
    ref.set_progress_bar_config(disable=True)
    pil = Image.fromarray(image).convert("RGB")

    def run_ref():
        ref(instruction, image=pil, num_inference_steps=args.steps, guidance_scale=7.5, image_guidance_scale=1.5,
            generator=torch.Generator().manual_seed(0), output_type="np")

    def run_plain():
        ours(image, instruction, operations=ops, steps=args.steps, seed=0, rse=False)

    def run_rse():
        ours(image, instruction, operations=ops, steps=args.steps, seed=0, rse=True)

    runs = {"diffusers": run_ref, "wo_rse": run_plain, "rse": run_rse}
    for fn in runs.values():  # warm-up
        fn()
    times = {k: [] for k in runs}
    wall = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t, w = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.process_time() - t)
            wall[name].append(time.perf_counter() - w)
    med = {k: statistics.median(v) for k, v in times.items()}
    medw = {k: statistics.median(v) for k, v in wall.items()}
    r_rse = med["rse"] / med["wo_rse"]
    r_plain = med["wo_rse"] / med["diffusers"]
    for k, v in med.items():
        print(f"{k:10s} median CPU {v:.3f} s, wall {medw[k]:.3f} s  (CPU runs: {', '.join(f'{x:.3f}' for x in times[k])})")
    print(f"rse / wo_rse = {r_rse:.3f} (goal <= 1.03); wo_rse / diffusers = {r_plain:.3f} (goal <= 1.05)")

    nparams = sum(p.numel() for p in ours.unet.parameters())
    lines = [
        SECTION,
        "",
        f"- machine: {platform.node() or 'vm'} ({platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}),"
        f" Python {platform.python_version()}, torch {torch.__version__}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python benchmarks/rse.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- components: preset `{args.preset}` (random weights, UNet {nparams / 1e6:.1f} M parameters), image {n}x{n},"
        f" {args.steps} DDIM steps, s_I 1.5, s_T 7.5; median of {args.repeats} interleaved runs after a warm-up",
        "",
        "| run | median CPU (s) | median wall (s) | ratio (CPU) | goal |",
        "|---|---:|---:|---:|---|",
        f"| diffusers StableDiffusionInstructPix2PixPipeline | {med['diffusers']:.3f} | {medw['diffusers']:.3f} | 1.00 | baseline |",
        f"| ours, wo-RSE | {med['wo_rse']:.3f} | {medw['wo_rse']:.3f} | {r_plain:.3f} (vs diffusers) | <= 1.05 |",
        f"| ours, RSE | {med['rse']:.3f} | {medw['rse']:.3f} | {r_rse:.3f} (vs wo-RSE) | <= 1.03 |",
        "",
        f"- run-to-run spread of CPU time ((max - min) / median): "
        + ", ".join(f"{k} {100 * (max(v) - min(v)) / med[k]:.0f}%" for k, v in times.items())
        + "; ratios closer to 1 than this spread are not resolved by this run.",
        f"- work by construction: wo-RSE and diffusers make the same {args.steps} UNet calls of batch 3; RSE adds one"
        f" call of batch 2 (relevance map), i.e. +{200 / (3 * args.steps):.1f}% UNet work, plus per-step re-noising of"
        " latent-sized tensors and one pixel composite.",
        "",
    ]
    replace_section(SECTION, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
